"""What the writer child processes share: the pipe's frames, their logging, their start.

Two children write for a serving process: the log store's (``loggers/store_process.py``) and the
spend ledger's (``proxy/spend_process.py``). Each reads frames from its stdin and answers frames
on its stdout; each shares the server's stderr; each ends only when the parent closes the pipe.
This module holds those parts once, so the two cannot drift apart (a child that logged plain
text among ``--log-format json`` lines, or unmasked, was a defect found in one of them).

A frame is a 4-byte big-endian length and that many bytes.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Callable
from typing import IO

import orjson

LENGTH = struct.Struct(">I")
# set by ``lmgate serve`` (proxy/server.py): the server's own logging set-up (``logging.config``'s
# dict, as JSON). A child shares its stderr, so it writes its lines as the server does (masked;
# ``--log-format json``: one JSON object a line), at the server's level
LOG_CONFIG_ENV = "LMGATE_LOG_CONFIG"

logger = logging.getLogger("lmgate.loggers")


def frame(body: bytes) -> bytes:
    """``body`` as one frame (the parent writes it to the child's stdin)."""
    return LENGTH.pack(len(body)) + body


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One frame, or None at a clean end of the stream; EOFError when it ends inside a frame."""
    head = stream.read(LENGTH.size)
    if not head:
        return None
    if len(head) < LENGTH.size:
        raise EOFError("the pipe closed inside a frame header")
    (size,) = LENGTH.unpack(head)
    body = stream.read(size) if size else b""
    if len(body) < size:
        raise EOFError(f"the pipe closed after {len(body)} of {size} bytes of a frame")
    return body


def write_frame(stream: IO[bytes], body: bytes) -> None:
    stream.write(frame(body))
    stream.flush()


def setup_logging(label: str) -> None:
    """The child's lines on the stderr it shares with the serving process: masked as that process
    masks its own, and under ``lmgate serve`` in the server's format and level (a plain-text line
    among JSON ones would break a log shipper reading ``--log-format json``). ``label`` starts
    each plain line (``lmgate store writer``)."""
    import logging.config

    from .._secrets import MaskingFilter

    config = os.environ.get(LOG_CONFIG_ENV)
    problem = None
    if config:
        try:
            logging.config.dictConfig(orjson.loads(config))
            return
        except (ValueError, TypeError, AttributeError, ImportError) as error:
            problem = error
    logging.basicConfig(level=logging.WARNING, format=f"{label}: %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskingFilter())
    if problem is not None:
        logger.warning(
            "%s: not a logging set-up this process can use (%s); plain lines", LOG_CONFIG_ENV, problem
        )


def run(serve: Callable[[IO[bytes], IO[bytes]], int], label: str) -> int:
    """A child's ``main``: ``serve(stdin, stdout)`` with the frames on a pipe of their own."""
    import signal

    # the parent decides when this process ends (by closing the pipe): a Ctrl-C or a SIGTERM sent
    # to the whole process group must not cut the parent's exit flush short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(label)
    stdin = os.fdopen(sys.stdin.fileno(), "rb", buffering=1 << 16, closefd=False)
    # the answers get a descriptor of their own; fd 1 then points at stderr, so a stray print()
    # in anything this process imports cannot corrupt the frames
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    try:
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    except (OSError, ValueError):  # no usable stderr (a daemon's): stray output goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    try:
        return serve(stdin, stdout)
    except (EOFError, BrokenPipeError):  # the parent went away mid-frame: nothing to answer
        return 0


__all__ = ["LENGTH", "LOG_CONFIG_ENV", "frame", "read_frame", "run", "setup_logging", "write_frame"]
