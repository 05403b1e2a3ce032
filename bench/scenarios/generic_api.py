"""Scenario `generic_api`: the generic API logger delivering to a local receiver.

Variants (each with a fresh receiver, bench/receiver.py, and a fresh child process doing the calls):
  normal          N calls, flush, exit: records/s delivered and records lost
  exit_no_flush   N calls, then the process just ends (no explicit flush)
  receiver_500    the receiver answers 500 for 10 s (2 s with --quick) from the first delivery attempt;
                  then flush and exit
  sigterm         SIGTERM when half of the calls have returned
  sigkill         SIGKILL when half of the calls have returned
  throughput      delivery throughput: N standard payloads handed to the logger's own success hook as
                  fast as it takes them, then a flush; records/s = unique records received / (last
                  receipt - first hand-off). No calls are made, so the call pipeline's cost is out of it.
                  lmgate runs with its defaults here (spool="exit": disk only for what is left at exit).
  throughput_write_ahead
                  the same with lmgate's write-ahead spool on (every record written to disk before the
                  hook returns), as in the other variants.

"Lost" = calls that returned (the child appends one byte to a progress file per returned call, so the
count survives a kill) minus unique records the receiver got.  lmgate runs with its disk spool on; after
every variant a fresh lmgate process opens the same spool and flushes ("lost after restart").  LiteLLM
has no spool, so its "after restart" equals "lost".

This driver is stdlib only (it never imports the implementation, so it costs no import time); the child
is this same file with --role child.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from _common import (
    MESSAGES,
    MODEL,
    Skip,
    adrain,
    exit_on_sigterm,
    load_impl,
    metric,
    parse_args,
    run_variants,
    start_helper,
    stop_helper,
    variants,
)

VARIANTS = [
    "normal",
    "exit_no_flush",
    "receiver_500",
    "sigterm",
    "sigkill",
    "throughput",
    "throughput_write_ahead",
]
THROUGHPUT = ("throughput", "throughput_write_ahead")
BATCH_SIZE = 100
FLUSH_INTERVAL = 1.0


# ---------------------------------------------------------------- child side (imports the impl)


def make_logger(impl: str, endpoint: str, spool_dir: str, write_ahead: bool = True):
    if impl == "lmgate":
        try:
            from lmgate.loggers.generic_api import GenericAPILogger
        except Exception as exc:  # noqa: BLE001
            raise Skip(f"lmgate.loggers.generic_api.GenericAPILogger not importable: {exc!r}") from exc
        return GenericAPILogger(
            endpoint=endpoint,
            headers={"x-bench": "1"},
            log_format="json_array",
            batch_size=BATCH_SIZE,
            flush_interval=FLUSH_INTERVAL,
            spool_dir=spool_dir,
            # write-ahead: every record on disk before its call returns, so SIGKILL loses nothing;
            # otherwise the default ("exit": disk only for what is undelivered at exit)
            spool="write_ahead" if write_ahead else "exit",
        )
    from litellm.integrations.generic_api.generic_api_callback import GenericAPILogger

    # LiteLLM's defaults otherwise (max_retries=0); it needs a running loop, which the caller has
    return GenericAPILogger(
        endpoint=endpoint,
        headers={"x-bench": "1"},
        log_format="json_array",
        batch_size=BATCH_SIZE,
        flush_interval=FLUSH_INTERVAL,
    )


async def flush(mod, impl: str, logger, timeout: float) -> None:
    """The documented way to flush, per implementation, bounded by timeout."""
    await adrain(mod, impl, timeout)  # hooks run first: they fill the logger's queue
    if impl == "litellm":
        await asyncio.wait_for(logger.flush_queue(), timeout)


async def child_main(args) -> dict:
    mod = load_impl(args.impl)
    if not hasattr(mod, "acompletion"):
        raise Skip(f"{args.impl} has no acompletion yet")
    logger = make_logger(args.impl, args.endpoint, args.spool_dir, write_ahead=args.mode != "throughput")
    mod.callbacks = [logger]
    if args.role == "recover":
        # a new process on the same spool: whatever the dead one left on disk goes out now
        await flush(mod, args.impl, logger, 20)
        return {"recovered": True}

    if args.mode in THROUGHPUT:
        return await throughput(mod, args, logger)

    progress = open(args.progress, "ab", buffering=0)  # noqa: SIM115 - one unbuffered byte per call
    t_first = time.time()
    next_id = iter(range(args.calls))

    async def worker() -> None:
        for i in next_id:
            await mod.acompletion(model=MODEL, messages=MESSAGES, mock_response=f"r{i}")
            progress.write(b".")
            if args.pace:
                await asyncio.sleep(args.pace)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    t_calls = time.time()
    if args.mode != "exit_no_flush":
        await flush(mod, args.impl, logger, args.flush_timeout)
    info = {"t_first": t_first, "t_calls_done": t_calls, "t_flushed": time.time()}
    if hasattr(logger, "stats"):
        try:
            info["logger_stats"] = logger.stats()
        except Exception as exc:  # noqa: BLE001
            info["logger_stats"] = repr(exc)
    return info


async def throughput(mod, args, logger) -> dict:
    """Hand the logger N payloads through its async success hook (the same call on both sides)."""
    captured: list[dict] = []

    async def capture(kwargs, response, start, end):  # async: LiteLLM skips sync functions on async calls
        captured.append(kwargs["standard_logging_object"])

    mod.callbacks = []
    mod.success_callback = [capture]
    await mod.acompletion(model=MODEL, messages=MESSAGES, mock_response="throughput")
    await adrain(mod, args.impl)
    mod.success_callback = []
    mod.callbacks = [logger]
    template = captured[0]
    payloads = [dict(template, id=f"tp-{i}", litellm_call_id=f"tp-{i}") for i in range(args.calls)]
    t_first = time.time()
    for payload in payloads:
        await logger.async_log_success_event({"standard_logging_object": payload}, None, None, None)
    t_handed = time.time()
    await flush(mod, args.impl, logger, args.flush_timeout)
    with open(args.progress, "ab") as progress:  # the driver counts "produced" from this file
        progress.write(b"." * args.calls)
    return {"t_first": t_first, "t_handed": t_handed, "t_flushed": time.time()}


def child(args) -> None:
    try:
        out = asyncio.run(child_main(args))
    except Skip as exc:
        out = {"skipped": str(exc)}
    print(json.dumps(out), flush=True)
    if args.mode == "exit_no_flush":
        # leave the way a script that simply ends does: interpreter shutdown, atexit hooks included
        sys.exit(0)


# ---------------------------------------------------------------- driver side (stdlib only)


def receiver_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read())


def wait_quiet(port: int, quiet_s: float, max_s: float) -> dict:
    """Poll the receiver until its count stops moving for quiet_s (bounded by max_s)."""
    deadline = time.monotonic() + max_s
    last, since = receiver_stats(port), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = receiver_stats(port)
        if now["received"] != last["received"]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


def run_child(args, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, os.path.abspath(__file__), "--impl", args.impl, "--role", *extra]
    if args.quick:
        cmd.append("--quick")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def read_json(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    for line in reversed((out or "").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def drive(args, variant: str) -> dict:
    quick = args.quick
    fail_s = (2.0 if quick else 10.0) if variant == "receiver_500" else 0.0
    killing = variant in ("sigterm", "sigkill")
    calls = (300 if killing else 500) if quick else (2000 if killing else 5000)
    if variant in THROUGHPUT:
        calls = 5000 if quick else 20000
    # the kill variants pace their calls so that "mid-run" is a real, observable moment
    pace, concurrency = (0.02, 10) if killing else (0.0, 50)
    t_variant = time.perf_counter()
    receiver, port = start_helper("receiver.py", "--fail-seconds", str(fail_s), "--max-seconds", "300")
    tmp = tempfile.mkdtemp(prefix="bench-genapi-")
    spool = os.path.join(tmp, "spool")
    progress = os.path.join(tmp, "progress")
    common = ["--endpoint", f"http://127.0.0.1:{port}/log", "--spool-dir", spool]
    try:
        proc = run_child(
            args,
            [
                "child",
                "--mode",
                variant,
                "--calls",
                str(calls),
                "--concurrency",
                str(concurrency),
                "--pace",
                str(pace),
                "--progress",
                progress,
                "--flush-timeout",
                str(fail_s + 20),
                *common,
            ],
        )
        if killing:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if os.path.exists(progress) and os.path.getsize(progress) >= calls // 2:
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM if variant == "sigterm" else signal.SIGKILL)
        out = read_json(proc, timeout=fail_s + 90)
        t_child = time.perf_counter() - t_variant
        if "skipped" in out:
            raise Skip(out["skipped"])
        produced = os.path.getsize(progress) if os.path.exists(progress) else 0
        got = wait_quiet(port, quiet_s=0.6, max_s=fail_s + 30)
        lost = produced - got["unique"]
        # the spool replay: a new process of the same implementation on the same spool dir
        after = got
        if args.impl == "lmgate":
            rec = run_child(args, ["recover", *common])
            read_json(rec, timeout=60)
            after = wait_quiet(port, quiet_s=0.6, max_s=30)
        metrics = {
            "records_produced": metric(produced, "calls", "higher", ratio=False),
            "records_lost": metric(lost, "records", "lower", ratio=False),
            "lost_after_restart": metric(produced - after["unique"], "records", "lower", ratio=False),
        }
        if variant in ("normal", *THROUGHPUT) and "t_first" in out and got["last_at"] > out["t_first"]:
            metrics["records_per_s"] = metric(
                got["unique"] / (got["last_at"] - out["t_first"]), "rec/s", "higher"
            )
        info = {
            "produced": produced,
            "delivered": got["unique"],
            "delivered_after_restart": after["unique"],
            "received_incl_dups": after["received"],
            "posts": after["posts"],
            "rejected_posts": after["rejected_posts"],
            "child_exit": proc.returncode,
            "logger_stats": out.get("logger_stats"),
            "t_child_s": round(t_child, 2),
            "variant_s": round(time.perf_counter() - t_variant, 2),
        }
        return {"metrics": metrics, "info": info}
    finally:
        stop_helper(receiver)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    args = parse_args(
        [
            ("--role", {"default": "driver", "choices": ["driver", "child", "recover"]}),
            ("--mode", {"default": "normal"}),
            ("--calls", {"type": int, "default": 1000}),
            ("--concurrency", {"type": int, "default": 50}),
            ("--pace", {"type": float, "default": 0.0}),
            ("--progress", {"default": os.devnull}),
            ("--flush-timeout", {"type": float, "default": 30.0}),
            ("--endpoint", {"default": ""}),
            ("--spool-dir", {"default": ""}),
        ]
    )
    if args.role != "driver":
        child(args)
        return
    exit_on_sigterm()
    chosen = variants(args.variant, VARIANTS)
    skipped: list[str] = []

    def measure(variant: str) -> dict:
        if skipped:  # one "not there yet" is enough; don't pay four more child start-ups
            raise Skip(skipped[0])
        try:
            return drive(args, variant)
        except Skip as exc:
            skipped.append(str(exc))
            raise

    run_variants(args.impl, "generic_api", chosen, measure)


if __name__ == "__main__":
    main()
