"""aiohttp's request-body writer started inside the call, for a request alone on its wire (issue 18).

``ClientRequest.send`` writes a body from a task of its own (``write_bytes``). On Python 3.12+
aiohttp starts that task eagerly, so a small body leaves inside ``send``; on 3.11 the task only
runs at the loop's next turn: one task, one pass through the loop and one more poll of it before
the request's bytes leave. ``PlainPost`` installs ``eager_body_task`` as the loop's task factory
for the span of one ``ClientRequest.send`` (which makes no other task and does not wait) when the
request is the only one on its connector: what one request at a time waits for.

Under concurrency the task stays as aiohttp makes it on 3.11: session 8 measured a task factory that
started every body eagerly (installed for the loop's whole life) at ~15% fewer requests/s at c=50
(docs/proxy.md, issue 18, eleventh pass); here a request with others in flight is sent exactly as
before, and every other coroutine always gets the loop's own ``Task``.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from collections.abc import Generator
from typing import Any

import aiohttp

_WRITE_BYTES = getattr(getattr(aiohttp.ClientRequest, "write_bytes", None), "__code__", None)

# where this helps: aiohttp starts the writer eagerly itself on 3.12+
NEEDED = sys.version_info < (3, 12) and _WRITE_BYTES is not None


def eager_body_task(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
    """A task factory: aiohttp's ``write_bytes`` started as an eager task is on 3.12, any other
    coroutine the loop's usual ``Task``."""
    if getattr(coro, "cr_code", None) is not _WRITE_BYTES:
        return asyncio.Task(coro, loop=loop, **kwargs)
    return start_eagerly(loop, coro, kwargs)


def start_eagerly(loop: asyncio.AbstractEventLoop, coro: Any, kwargs: dict[str, Any]) -> Any:
    """What an eager ``Task`` is on 3.12: done already (a future with its outcome) when the
    coroutine finished in its first step, else a task that goes on from where it waits. Both
    parts run in the context the task would have had (a copy of the caller's), as on 3.12;
    ``kwargs``: the task's (``context``, ``name``)."""
    context = kwargs.get("context")
    if context is None:
        context = kwargs["context"] = contextvars.copy_context()
    try:
        waiting = context.run(coro.send, None)
    except StopIteration as done:
        future = loop.create_future()
        future.set_result(done.value)
        return future
    except asyncio.CancelledError:
        future = loop.create_future()
        future.cancel()
        return future
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # write_bytes answers its own errors; this is a bug's
        future = loop.create_future()
        future.set_exception(error)
        return future
    resumed = _resumed(coro, waiting)
    resumed.send(None)  # to its first ``yield``: from here a cancellation reaches ``coro`` too
    return asyncio.Task(resumed, loop=loop, **kwargs)


@types.coroutine
def _resumed(coro: Any, waiting: Any) -> Generator[Any, Any, Any]:
    """``coro``, started already and waiting on ``waiting``, driven on by the task that runs this.
    Started by ``start_eagerly`` up to its first ``yield``, so that the task's first step (or a
    cancellation before it, which an ``async def`` wrapper would swallow unstarted) lands here."""
    primed = True
    while True:
        try:
            sent = yield (None if primed else waiting)
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as error:  # the task's cancellation, thrown on into the coroutine
            primed = False
            try:
                waiting = coro.throw(error)
            except StopIteration as done:
                return done.value
        else:
            if primed:  # the task's first step: hand it the wait ``coro`` is in
                primed = False
                continue
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return done.value
