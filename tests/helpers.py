"""Small helpers shared by tests: run one call in any of the four ways (sync/async × plain/streamed)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import lmgate

MESSAGES = [{"role": "user", "content": "Hi"}]

MODES = [("sync", False), ("sync", True), ("async", False), ("async", True)]
MODE_IDS = ["sync", "sync-stream", "async", "async-stream"]


def call(mode: str, stream: bool, **kwargs: Any) -> Any:
    """One completion in the given mode; streams are consumed; returns the response or the chunks."""
    kwargs.setdefault("model", "gpt-4o-mini")
    kwargs.setdefault("messages", MESSAGES)
    if mode == "sync":
        result = lmgate.completion(stream=stream, **kwargs)
        return list(result) if stream else result

    async def run() -> Any:
        result = await lmgate.acompletion(stream=stream, **kwargs)
        if stream:
            return [c async for c in result]
        return result

    return asyncio.run(run())


def flush() -> None:
    assert lmgate.flush_callbacks(10), "callbacks did not drain within 10 s"


def wal_lines(directory: Any) -> list[bytes]:
    """Every record line of a spool directory's .wal segments, oldest segment first."""
    out: list[bytes] = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".wal"):
            with open(os.path.join(directory, name), "rb") as f:
                data = f.read()
            end = data.find(b"\0")  # a mapped segment holds zeros past its lines until it is retired
            out.extend(line for line in (data if end < 0 else data[:end]).split(b"\n") if line)
    return out
