"""At interpreter exit, pending callback deliveries are flushed within a bound."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, **env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def test_pending_deliveries_run_before_exit(tmp_path):
    """A short program that never flushes still delivers every success event (sync and async calls)."""
    out = tmp_path / "seen.txt"
    result = run(
        f"""
        import asyncio, threading, lmgate
        from lmgate import CustomLogger
        gate = threading.Event()

        class Slow(CustomLogger):
            def log_success_event(self, kwargs, r, s, e):
                gate.wait(0.05)  # a slow hook: the program ends before it catches up
                open({str(out)!r}, "a").write("sync\\n")
            async def async_log_success_event(self, kwargs, r, s, e):
                open({str(out)!r}, "a").write("async\\n")

        lmgate.callbacks = [Slow()]
        for _ in range(20):
            lmgate.completion(model="gpt-4o-mini", messages=[{{"role": "user", "content": "x"}}], mock_response="y")

        async def main():
            for _ in range(20):
                await lmgate.acompletion(model="gpt-4o-mini", messages=[{{"role": "user", "content": "x"}}], mock_response="y")
        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines.count("sync") == 20 and lines.count("async") == 20


def test_exit_flush_is_bounded_and_reports_what_is_left(tmp_path):
    """A hook that never finishes cannot hold the process: exit waits at most the bound, then reports."""
    result = run(
        """
        import threading, lmgate
        forever = threading.Event()
        def stuck(kwargs, r, s, e):
            forever.wait()
        lmgate.success_callback = [stuck]
        lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], mock_response="y")
        """,
        LMGATE_EXIT_FLUSH_TIMEOUT_S="0.5",
    )
    assert result.returncode == 0, result.stderr
    assert "still pending" in result.stderr


def test_sys_exit_also_flushes(tmp_path):
    """sys.exit() in the middle of a program still runs the exit flush."""
    out = tmp_path / "seen.txt"
    result = run(
        f"""
        import sys, lmgate
        def record(kwargs, r, s, e):
            open({str(out)!r}, "a").write(kwargs["litellm_call_id"] + "\\n")
        lmgate.success_callback = [record]
        for _ in range(5):
            lmgate.completion(model="gpt-4o-mini", messages=[{{"role": "user", "content": "x"}}], mock_response="y")
        sys.exit(3)
        """
    )
    assert result.returncode == 3
    assert len(out.read_text().splitlines()) == 5


SLOW_DELIVERY = """
    import threading, lmgate
    gate = threading.Event()
    def record(kwargs, r, s, e):
        gate.wait(0.2)  # the program ends before this delivery finishes
        print("delivered", flush=True)
    lmgate.success_callback = [record]
    lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], mock_response="y")
    """


def test_exit_flush_timeout_takes_a_duration_with_a_unit():
    """LMGATE_EXIT_FLUSH_TIMEOUT_S="5s" is a duration like every other one: the pending record is delivered."""
    result = run(SLOW_DELIVERY, LMGATE_EXIT_FLUSH_TIMEOUT_S="5s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("delivered") == 1
    assert "LMGATE_EXIT_FLUSH_TIMEOUT_S" not in result.stderr


def test_bad_exit_flush_timeout_loses_nothing_and_warns_once():
    """A bad exit timeout falls back to the default with one warning naming the variable; the record is delivered."""
    result = run(SLOW_DELIVERY, LMGATE_EXIT_FLUSH_TIMEOUT_S="soon")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("delivered") == 1
    assert result.stderr.count("LMGATE_EXIT_FLUSH_TIMEOUT_S") == 1
    assert "Traceback" not in result.stderr


def test_bad_callback_thread_count_is_a_config_error_naming_the_variable():
    """LMGATE_CALLBACK_THREADS=many fails the first call with a ConfigError naming the variable."""
    result = run(
        """
        import lmgate
        from lmgate.exceptions import ConfigError
        lmgate.success_callback = [lambda *a: None]
        try:
            lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], mock_response="y")
        except ConfigError as error:
            print("ConfigError:", error)
        """,
        LMGATE_CALLBACK_THREADS="many",
    )
    assert result.returncode == 0, result.stderr
    assert "ConfigError:" in result.stdout and "LMGATE_CALLBACK_THREADS" in result.stdout
