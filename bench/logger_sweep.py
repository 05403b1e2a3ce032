"""lmgate alone: the generic API logger's delivery rate by `max_in_flight` and spool mode.

    .venv/bin/python bench/logger_sweep.py [--records 20000] [--rounds 4] [--in-flight 1,2,3,4]

Not a side-by-side benchmark (bench/run.py is): a tuning aid that shows what the settings cost on
this machine. For each setting a fresh logger in this process gets `--rounds` rounds of
`--records` standard payloads (~2 KB each) through its own success hook, each round ended by a
flush; the first round is reported apart (cold: fresh memory, first connections), the others as
their median. The receiver is bench/receiver.py in another process on the same machine, so it
competes for the same cores. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "scenarios"))

from _common import MESSAGES, MODEL, start_helper, stop_helper  # noqa: E402


def template_payload() -> dict:
    import lmgate

    captured: list[dict] = []
    lmgate.success_callback = [lambda kwargs, *_: captured.append(kwargs["standard_logging_object"])]
    lmgate.completion(model=MODEL, messages=MESSAGES, mock_response="sweep")
    lmgate.flush_callbacks(10)
    lmgate.success_callback = []
    return captured[0]


def measure(endpoint: str, template: dict, in_flight: int, spool: str, records: int, rounds: int) -> list[float]:
    from lmgate.loggers import GenericAPILogger

    spool_dir = tempfile.mkdtemp(prefix="lmgate-sweep-")
    logger = GenericAPILogger(
        endpoint=endpoint,
        batch_size=100,
        flush_interval=1.0,
        max_in_flight=in_flight,
        spool=spool,
        spool_dir=spool_dir,
    )
    rates = []
    try:
        for r in range(rounds):
            payloads = [dict(template, id=f"{in_flight}-{spool}-{r}-{i}") for i in range(records)]
            t0 = time.perf_counter()
            for payload in payloads:
                logger.log_success_event({"standard_logging_object": payload}, None, None, None)
            if not logger.flush(120):
                raise RuntimeError(f"flush timed out: {logger.stats()}")
            rates.append(records / (time.perf_counter() - t0))
        stats = logger.stats()
        assert stats["delivered"] == records * rounds, stats
    finally:
        logger.close(5)
        shutil.rmtree(spool_dir, ignore_errors=True)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--in-flight", default="1,2,3,4")
    ap.add_argument("--spool", default="exit,write_ahead")
    args = ap.parse_args()
    receiver, port = start_helper("receiver.py", "--max-seconds", "3600")
    try:
        template = template_payload()
        print("| max_in_flight | spool | cold round (rec/s) | warm rounds, median (min–max) |")
        print("|---|---|---|---|")
        for spool in args.spool.split(","):
            for k in (int(x) for x in args.in_flight.split(",")):
                rates = measure(f"http://127.0.0.1:{port}/log", template, k, spool, args.records, args.rounds)
                warm = rates[1:] or rates
                print(
                    f"| {k} | {spool} | {rates[0]:,.0f} | {statistics.median(warm):,.0f} "
                    f"({min(warm):,.0f}–{max(warm):,.0f}) |",
                    flush=True,
                )
    finally:
        stop_helper(receiver)


if __name__ == "__main__":
    main()
