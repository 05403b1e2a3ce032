"""Scenario `import`: wall time of `import <impl>` and peak RSS of a fresh process that did it.

lmgate imports most of itself lazily, on first use, so the import alone flatters it; the time of the
first mock `completion(...)` right after the import is reported too, as is their sum (a cold start).
"""

from __future__ import annotations

import resource
import sys
import time

from _common import MESSAGES, MOCK, MODEL, load_impl, metric, parse_args, run_variants


def peak_rss_kb() -> int:
    """This process's peak resident set (KiB): the kernel's VmHWM, which belongs to the program
    image and starts afresh at exec. Not ``getrusage(...).ru_maxrss``: Linux carries that over
    an exec, so a worker forked from a 25 MiB bench runner reported the runner's size."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main() -> None:
    args = parse_args()

    def measure(_variant: str) -> dict:
        # perf_counter around the import itself: interpreter start-up is the same for both sides
        t0 = time.perf_counter()
        load_impl(args.impl)
        dt = time.perf_counter() - t0
        rss_kb = peak_rss_kb()
        metrics = {
            "import_ms": metric(dt * 1000, "ms", "lower"),
            "peak_rss_mb": metric(rss_kb / 1024, "MiB", "lower"),
        }
        mod = sys.modules[args.impl]
        try:
            t1 = time.perf_counter()
            mod.completion(model=MODEL, messages=MESSAGES, mock_response=MOCK)
            first = time.perf_counter() - t1
        except Exception:  # noqa: BLE001 - completion not there yet: import numbers only
            return {"metrics": metrics}
        rss_kb = peak_rss_kb()
        metrics["first_call_ms"] = metric(first * 1000, "ms", "lower")
        metrics["cold_start_ms"] = metric((dt + first) * 1000, "ms", "lower")
        metrics["peak_rss_after_call_mb"] = metric(rss_kb / 1024, "MiB", "lower")
        return {"metrics": metrics}

    run_variants(args.impl, "import", ["import"], measure)


if __name__ == "__main__":
    main()
