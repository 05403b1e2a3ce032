"""Test harness only: make print() write each call in one piece.

The samples print from their callbacks, which lmgate runs on its own threads, concurrently with
the sample's main thread; print() writes its arguments and end separately, so lines could
interleave mid-line. Output order is not what the tests check; whole lines are.
"""

import builtins
import io
import sys
import threading

_lock = threading.Lock()
_print = builtins.print


def _atomic_print(*args, sep=" ", end="\n", file=None, flush=False):
    buffer = io.StringIO()
    _print(*args, sep=sep, end=end, file=buffer)
    target = file if file is not None else sys.stdout
    with _lock:
        target.write(buffer.getvalue())
        if flush:
            target.flush()


builtins.print = _atomic_print
