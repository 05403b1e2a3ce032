"""Whole processes: records survive a normal end, sys.exit, SIGTERM and SIGKILL (with the spool), and the
next process sends what a dead one left. Synchronised on process exit, pipes and receiver counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from fakes import LogReceiver

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHILD = textwrap.dedent(
    """
    import sys, threading
    import lmgate
    from lmgate.loggers import GenericAPILogger
    endpoint, spool_dir, n, ending, spool = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    exit_timeout = float(sys.argv[6])
    if ending == "late_atexit":  # registered before the logger, so it runs after lmgate's close
        import atexit
        def late():
            print("late atexit", flush=True)
            threading.Event().wait()  # a cleanup that never ends
        atexit.register(late)
    logger = GenericAPILogger(
        endpoint=endpoint, spool_dir=spool_dir, spool=spool, batch_size=7, flush_interval=60, exit_timeout=exit_timeout
    )
    lmgate.callbacks = [logger]
    for i in range(n):
        lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], mock_response=f"r{i}")
    if ending == "recover":
        ok = logger.flush(10)
        print("flushed", ok, flush=True)
        sys.exit(0)
    if ending not in ("importing", "import_then_log"):  # those say ready from inside the import
        print("ready", flush=True)
    if ending == "exit3":
        sys.exit(3)
    if ending == "wait":
        threading.Event().wait(60)  # the test signals us
    if ending == "asleep_signal_elsewhere":  # CPython's race, made certain: SIGTERM lands on another
        import os, signal  # thread while the main thread sleeps, so nothing but lmgate wakes it
        main = threading.main_thread().ident
        other = next(t for t in threading.enumerate() if t.name.startswith("lmgate-batch"))
        def sleep_forever():
            threading.Event().wait()
        def asleep():  # the main thread is in the lock wait inside sleep_forever
            frame = sys._current_frames().get(main)
            if frame is None or frame.f_code.co_name != "wait":
                return False
            while frame is not None and frame.f_code.co_name != "sleep_forever":
                frame = frame.f_back
            return frame is not None
        def deliver_elsewhere():
            while not asleep():  # no event can say "the main thread sleeps now": look until it does
                os.sched_yield()
            signal.pthread_kill(other.ident, signal.SIGTERM)
        threading.Thread(target=deliver_elsewhere, daemon=True).start()
        sleep_forever()
    if ending == "own_handler":  # the program owns SIGTERM (lmgate never replaces its handler)
        import os, signal
        # a program that owns SIGTERM also owns CPython's race: a signal that lands just before a
        # blocking wait's system call leaves the wait asleep (lmgate's waker covers only its own
        # handler). The wakeup fd closes it: the C handler writes a byte, so the read returns.
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
        print("own handler", flush=True)
        os.read(r, 1)  # the handler raises SystemExit(7) as soon as this returns
        print("the handler did not exit", flush=True)
    if ending == "busy":  # a program mid-run: the main thread executes Python code when SIGTERM comes
        while True:
            sum(range(1000))
    if ending == "async_idle":  # an idle asyncio program (servers, workers)
        import asyncio
        asyncio.run(asyncio.Event().wait())
    if ending == "fork":  # a forked child gets SIGTERM's default action back
        import os, signal
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, b"default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else b"taken")
            os._exit(0)
        os.waitpid(pid, 0)
        ours = signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        print("child", os.read(r, 32).decode(), "parent", "taken" if ours else "default", flush=True)
    if ending == "import_then_log":  # the exit put off for the import is raised after it; cleanup must run
        import atexit, os
        atexit.register(lambda: print("program atexit ran", flush=True))
        sys.path.insert(0, os.path.join(spool_dir, "mods"))
        try:
            import slowpkg
            threading.Event().wait()  # SystemExit(143) is raised here, once the import is over
        finally:
            logger.enqueue({"after": "import"})  # a cleanup that logs: delivered at exit too
            threading.Event().wait(0.5)  # a cleanup that takes a while (no re-sent SIGTERM may cut it)
            print("finally done", flush=True)
    if ending == "shutdown_stuck":  # the script ends, but a pool worker never does
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(1)
        pool.submit(threading.Event().wait)
        threading._register_atexit(lambda: print("shutting down", flush=True))
    if ending == "importing":  # SIGTERM while the main thread runs a module being imported
        import os
        sys.path.insert(0, os.path.join(spool_dir, "mods"))
        import slowpkg  # says ready, then spins until lmgate's handler has seen SIGTERM
        while True:
            sum(range(1000))
    """
)


# the exit flush's bound: roomy where every record must arrive (a loaded machine delivered 3 of 10
# records within 1.5 s), short where the receiver is down and the child waits it out before spooling
DELIVER_S, GIVE_UP_S = 10.0, 1.5


def run_child(
    rx_url: str, spool_dir: str, n: int, ending: str, spool: str = "exit", exit_timeout: float = DELIVER_S
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, rx_url, spool_dir, str(n), ending, spool, str(exit_timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()  # never leave a spinning child behind
        out, err = proc.communicate()
        raise AssertionError(f"the child did not end within 60 s; stderr: {err[-2000:]}") from None
    return proc.returncode, out, err


@pytest.mark.parametrize(("ending", "code"), [("end", 0), ("exit3", 3)])
def test_records_are_flushed_when_the_program_ends(
    tmp_path, log_receiver: LogReceiver, ending: str, code: int
) -> None:
    """A program that just ends (or calls sys.exit) without flushing still delivers every record."""
    rc, out, err = finish(run_child(log_receiver.url, str(tmp_path), 10, ending))
    assert rc == code, err
    assert len(log_receiver.records) == 10


SLOW_PACKAGE = """
from lmgate.loggers import signals
print("ready", flush=True)
while not signals.pending():  # until lmgate's handler has put the exit off
    sum(range(100))
print("import finished", flush=True)
"""


@pytest.mark.parametrize("ending", ["wait", "busy", "async_idle", "importing", "asleep_signal_elsewhere"])
def test_sigterm_flushes_and_exits_143(tmp_path, log_receiver: LogReceiver, ending: str) -> None:
    """SIGTERM ends the program with status 143 after delivering every record: whether the main
    thread sleeps in a lock wait, computes, idles in asyncio, or runs a module being imported
    (which is let finish: unwinding mid-import left packages half-imported, and the delivery
    threads failed on them), or sleeps in a wait without a timeout while the SIGTERM lands on
    another thread (CPython's race, made certain: only lmgate's waker gets the main thread out)."""
    package = tmp_path / "mods" / "slowpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(SLOW_PACKAGE)
    proc = run_child(log_receiver.url, str(tmp_path), 10, ending)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    if ending != "asleep_signal_elsewhere":  # that child signals itself
        proc.send_signal(signal.SIGTERM)
    rc, out, err = finish(proc)
    assert rc == 143, err
    assert len(log_receiver.records) == 10
    if ending == "importing":
        assert "import finished" in out


def test_receiver_down_at_exit_next_process_sends_the_spool(tmp_path, log_receiver: LogReceiver) -> None:
    """Records that cannot be sent before exit are spooled, and the next process sends them."""
    log_receiver.stop()
    rc, _, err = finish(run_child(log_receiver.url, str(tmp_path), 9, "end", exit_timeout=GIVE_UP_S))
    assert rc == 0, err
    assert "spooled" in err
    log_receiver.start()
    rc, out, err = finish(run_child(log_receiver.url, str(tmp_path), 0, "recover"))
    assert (rc, out.strip()) == (0, "flushed True"), err
    assert sorted(r["response"]["choices"][0]["message"]["content"] for r in log_receiver.records) == sorted(
        f"r{i}" for i in range(9)
    )


def test_sigkill_loses_no_returned_call(tmp_path, log_receiver: LogReceiver) -> None:
    """With the write-ahead spool, after SIGKILL every record of a call that had returned is sent by the next process."""
    log_receiver.stop()  # nothing can leave the first process before it dies
    proc = run_child(log_receiver.url, str(tmp_path), 12, "wait", spool="write_ahead")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    rc, _, _ = finish(proc)
    assert rc == -signal.SIGKILL
    log_receiver.start()
    rc, out, err = finish(run_child(log_receiver.url, str(tmp_path), 0, "recover", spool="write_ahead"))
    assert (rc, out.strip()) == (0, "flushed True"), err
    assert len(log_receiver.records) == 12


def test_a_forked_child_gets_the_default_sigterm_back(tmp_path, log_receiver: LogReceiver) -> None:
    """lmgate's SIGTERM handling belongs to the process that installed it: a forked child (a
    multiprocessing worker, say) has no watcher and holds copies of the parent's records, so
    SIGTERM there does what it would do without lmgate."""
    rc, out, err = finish(run_child(log_receiver.url, str(tmp_path), 0, "fork"))
    assert rc == 0, err
    assert out.split()[-4:] == ["child", "default", "parent", "taken"], out


def test_sigterm_with_the_receiver_down_spools_within_the_bound(tmp_path, log_receiver: LogReceiver) -> None:
    """SIGTERM while nothing can be delivered: the flush gives up at the exit bound, the process
    exits 143, the records are spooled, and the next process sends them."""
    log_receiver.stop()
    proc = run_child(log_receiver.url, str(tmp_path), 10, "wait", exit_timeout=GIVE_UP_S)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == 143, err
    assert "spooled" in err
    log_receiver.start()
    rc, out, err = finish(run_child(log_receiver.url, str(tmp_path), 0, "recover"))
    assert (rc, out.strip()) == (0, "flushed True"), err
    assert len(log_receiver.records) == 10


def test_an_exit_put_off_for_an_import_lets_cleanup_run(tmp_path, log_receiver: LogReceiver) -> None:
    """SIGTERM mid-import; the exit is put off until the import is over, then raised. The program's
    finally block (which logs one more record) and atexit callbacks run in full. (A re-sent
    SIGTERM of lmgate's taken for a second one would cut the finally short; this test does not
    force that race, the code re-checks before sending and counts its own signals.)"""
    package = tmp_path / "mods" / "slowpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(SLOW_PACKAGE)
    proc = run_child(log_receiver.url, str(tmp_path), 10, "import_then_log")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    rc, out, err = finish(proc)
    assert rc == 143, err
    assert "finally done" in out and "program atexit ran" in out, out
    assert len(log_receiver.records) == 11


def test_sigterm_while_shutdown_waits_for_a_thread_closes_and_exits_143(
    tmp_path, log_receiver: LogReceiver
) -> None:
    """The script ended but a non-daemon worker holds the process up: SIGTERM delivers the records
    and ends the process with 143 (without lmgate: killed, records lost)."""
    proc = run_child(log_receiver.url, str(tmp_path), 10, "shutdown_stuck")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().strip() == "shutting down"
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == 143, err
    assert len(log_receiver.records) == 10


def test_after_the_loggers_closed_sigterm_has_its_default_action(tmp_path, log_receiver: LogReceiver) -> None:
    """A program's atexit callback that runs after lmgate's close can still be stopped by SIGTERM."""
    proc = run_child(log_receiver.url, str(tmp_path), 10, "late_atexit")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().strip() == "late atexit"
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == -signal.SIGTERM, err
    assert len(log_receiver.records) == 10


def test_with_the_handler_turned_off_sigterm_kills_and_the_write_ahead_spool_keeps_every_record(
    tmp_path, log_receiver: LogReceiver
) -> None:
    """LMGATE_SIGTERM_FLUSH=0: lmgate leaves SIGTERM alone (the process dies of it, no flush at
    exit); what the write-ahead spool holds is sent by the next process, so nothing is lost."""
    log_receiver.stop()  # nothing can leave the first process before it dies
    env = dict(os.environ, LMGATE_SIGTERM_FLUSH="0")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            log_receiver.url,
            str(tmp_path),
            "10",
            "wait",
            "write_ahead",
            str(GIVE_UP_S),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == -signal.SIGTERM, err  # killed: lmgate's handler was not there
    assert "not delivered at shutdown" not in err  # and no exit flush ran
    log_receiver.start()
    rc, out, err = finish(run_child(log_receiver.url, str(tmp_path), 0, "recover", spool="write_ahead"))
    assert (rc, out.strip()) == (0, "flushed True"), err
    assert len(log_receiver.records) == 10


def test_a_program_that_owns_sigterm_keeps_its_handler_and_still_loses_nothing(
    tmp_path, log_receiver: LogReceiver
) -> None:
    """lmgate never replaces a SIGTERM handler the program set; a handler that exits the usual
    way (sys.exit) gets the exit flush through atexit."""
    proc = run_child(log_receiver.url, str(tmp_path), 10, "own_handler")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().strip() == "own handler"
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == 7, err
    assert len(log_receiver.records) == 10


@pytest.mark.parametrize("how", ["disable()", "LMGATE_SIGTERM_FLUSH=0", "on"])
def test_the_sigterm_handler_can_be_turned_off(how: str) -> None:
    """``signals.disable()`` (what ``lmgate serve`` calls: its server owns signals) or the
    environment switch: creating a batch logger then leaves SIGTERM alone."""
    code = textwrap.dedent(
        f"""
        import signal
        from lmgate.loggers import BatchLogger, InMemoryExporter, signals
        if {how == "disable()"}:
            signals.disable()
        BatchLogger(InMemoryExporter(), name="switch", spool="off")
        print("default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else "taken")
        """
    )
    env = dict(os.environ)
    env.pop("LMGATE_SIGTERM_FLUSH", None)
    if how.startswith("LMGATE"):
        env["LMGATE_SIGTERM_FLUSH"] = "0"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("taken" if how == "on" else "default")


def test_a_misspelt_sigterm_switch_keeps_the_flush_on_and_says_so_once() -> None:
    """LMGATE_SIGTERM_FLUSH=flase is not a boolean: the handler stays on (no record lost), with one warning."""
    code = textwrap.dedent(
        """
        import signal
        from lmgate.loggers import BatchLogger, InMemoryExporter
        BatchLogger(InMemoryExporter(), name="switch1", spool="off")
        BatchLogger(InMemoryExporter(), name="switch2", spool="off")
        print("default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else "taken")
        """
    )
    env = dict(os.environ, LMGATE_SIGTERM_FLUSH="flase")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "taken"
    assert result.stderr.count("LMGATE_SIGTERM_FLUSH") == 1
