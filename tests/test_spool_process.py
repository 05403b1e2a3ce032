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
    logger = GenericAPILogger(
        endpoint=endpoint, spool_dir=spool_dir, spool=spool, batch_size=7, flush_interval=60, exit_timeout=1.5
    )
    lmgate.callbacks = [logger]
    for i in range(n):
        lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], mock_response=f"r{i}")
    if ending == "recover":
        ok = logger.flush(10)
        print("flushed", ok, flush=True)
        sys.exit(0)
    if ending != "importing":  # that one says ready itself, with the import lock held
        print("ready", flush=True)
    if ending == "exit3":
        sys.exit(3)
    if ending == "wait":
        threading.Event().wait(60)  # the test signals us
    if ending == "busy":  # a program mid-run: the main thread executes Python code when SIGTERM comes
        while True:
            sum(range(1000))
    if ending == "async_idle":  # an idle asyncio program (servers, workers)
        import asyncio
        asyncio.run(asyncio.Event().wait())
    if ending == "importing":  # SIGTERM while the main thread is inside the import system
        import _imp
        from lmgate.loggers import batch
        _imp.acquire_lock()
        print("ready", flush=True)
        while batch._deferred_exit is None:  # until lmgate's handler has seen SIGTERM (and waited)
            sum(range(100))
        _imp.release_lock()
        while True:
            sum(range(1000))
    """
)


def run_child(rx_url: str, spool_dir: str, n: int, ending: str, spool: str = "exit") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, rx_url, spool_dir, str(n), ending, spool],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.parametrize(("ending", "code"), [("end", 0), ("exit3", 3)])
def test_records_are_flushed_when_the_program_ends(tmp_path, log_receiver: LogReceiver, ending: str, code: int) -> None:
    """A program that just ends (or calls sys.exit) without flushing still delivers every record."""
    rc, out, err = finish(run_child(log_receiver.url, str(tmp_path), 10, ending))
    assert rc == code, err
    assert len(log_receiver.records) == 10


@pytest.mark.parametrize("ending", ["busy", "async_idle", "importing"])
def test_sigterm_flushes_and_exits_143(tmp_path, log_receiver: LogReceiver, ending: str) -> None:
    """SIGTERM ends the program with status 143 after delivering every record.

    Not tested: a main thread asleep in a bare lock wait (``Event().wait()``). CPython acts on a
    signal that arrives just before such a wait only when the wait returns (about 1 run in 60
    with two idle threads, more with busy ones); docs/loggers.md says so."""
    proc = run_child(log_receiver.url, str(tmp_path), 10, ending)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == 143, err
    assert len(log_receiver.records) == 10


def test_receiver_down_at_exit_next_process_sends_the_spool(tmp_path, log_receiver: LogReceiver) -> None:
    """Records that cannot be sent before exit are spooled, and the next process sends them."""
    log_receiver.stop()
    rc, _, err = finish(run_child(log_receiver.url, str(tmp_path), 9, "end"))
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
