"""``HTTPExporter``: how the generic API logger puts a batch on the wire.

``json_array`` — one POST with a JSON array; ``ndjson`` — one POST, ``application/x-ndjson``,
one record a line; ``single`` — one POST per record, at most ``max_concurrency`` at a time. Each
request carries an ``Idempotency-Key``, the same on every retry. The answer becomes an
``Outcome`` (``classify``): the batch processor retries, splits or drops by it.
"""

from __future__ import annotations

import functools
import gc
import gzip as gzip_module
import queue
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._retry import retry_after_seconds
from .._secrets import url_origin
from .exporter import DELIVERED, Batch, Outcome

LOG_FORMATS = ("json_array", "ndjson", "single")
CONTENT_TYPES = {
    "json_array": "application/json",
    "ndjson": "application/x-ndjson",
    "single": "application/json",
}
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_CONCURRENCY = 8
# answers that refuse a request as a whole: too large, or holding a record the receiver refuses
SPLIT_STATUSES = (400, 413)


def classify(status: int, headers: Mapping[str, str] | None = None) -> Outcome:
    """2xx delivered; 408, 429 and 5xx retried; 413 (too large) and 400 (a record refused) split
    into halves to find what the receiver takes; anything else dropped (retrying cannot fix it)."""
    if 200 <= status < 300:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return Outcome("retry", f"http_{status}", retry_after_seconds(headers) if headers else None)
    if status in SPLIT_STATUSES:
        return Outcome("split", f"rejected_{status}")
    return Outcome("drop", f"http_{status}")


class _Pool:
    """A few threads of our own for ``single`` mode, started up front: no thread has to be
    created while the interpreter exits, when Python refuses to."""

    def __init__(self, size: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], list[Any], int, threading.Condition, list[int]]
        ] = queue.SimpleQueue()
        for i in range(size):
            threading.Thread(target=self._run, name=f"lmgate-batch-{name}-{i}", daemon=True).start()

    def _run(self) -> None:
        while True:
            fn, results, index, cond, left = self._jobs.get()
            try:
                value = fn()
            except BaseException as error:  # noqa: B036 - handed back to map()
                value = error
            with cond:
                results[index] = value
                left[0] -= 1
                cond.notify()

    def map(self, fns: Sequence[Callable[[], Any]]) -> list[Any]:
        results: list[Any] = [None] * len(fns)
        cond = threading.Condition()
        left = [len(fns)]
        for i, fn in enumerate(fns):
            self._jobs.put((fn, results, i, cond, left))
        with cond:
            cond.wait_for(lambda: left[0] == 0)
        return results


class HTTPExporter:
    """POSTs batches to ``endpoint`` with one keep-alive ``httpx.Client`` (created on first use)."""

    # clients opened with a CA bundle for TLS (``_tls_settings``), counted for tests and checks
    ca_bundles_loaded = 0

    def __init__(
        self,
        endpoint: str,
        headers: dict[str, str],
        log_format: str = "json_array",
        timeout: float = DEFAULT_TIMEOUT_S,
        gzip: bool = False,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        transport: Any = None,
        name: str = "generic_api",
    ) -> None:
        self.endpoint = endpoint
        self.headers = headers
        self.log_format = log_format
        self.timeout = timeout
        self.gzip = gzip
        self._transport = transport
        self._client_obj: Any = None
        self._client_lock = threading.Lock()
        self._closed = False
        self._posting = 0  # requests under way: close() lets them finish (see close)
        self._pool = _Pool(max_concurrency, name) if log_format == "single" else None

    def __repr__(self) -> str:  # never the headers, never the URL's path
        return f"<HTTPExporter {url_origin(self.endpoint)} {self.log_format}>"

    def prepare(self) -> None:
        """Import httpx and open the client ahead of the first batch (the batching base calls
        this on a delivery thread at start): ~0.2 s that the first delivery would otherwise wait."""
        first_import = "httpcore" not in sys.modules
        if self._client(prepare=True) is None or not first_import:
            return
        # The client's modules (httpx, httpcore, h11, and whatever httpcore finds installed, e.g.
        # trio) add ~12,000 long-lived objects, a third of a mock proxy's heap: enough that the
        # interpreter's next full collection came due and ran in the first second of traffic,
        # stopping the serving loop for 12-18 ms on a lightly loaded machine and 40-90 ms on a
        # busy one (the proxy bench's generic_api variant: one such collection in each of 24
        # runs, none without the logger). One full collection here, at start-up and only by the
        # exporter that brought those modules in, settles them in the oldest generation, so the
        # next full collection is far away (none during load in 60 runs).
        gc.collect()

    def _client(self, prepare: bool = False) -> Any:
        client = self._client_obj
        if client is None:
            import httpx

            from .._http import timeout as make_timeout

            with self._client_lock:
                if self._closed:  # never open a client that nobody would close
                    if prepare:
                        return None
                    raise RuntimeError("the exporter is closed")
                if self._client_obj is None:
                    self._client_obj = httpx.Client(
                        timeout=make_timeout(self.timeout),
                        verify=self._tls_settings(),
                        transport=self._transport,
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
                        follow_redirects=False,
                    )
                client = self._client_obj
        return client

    def _tls_settings(self) -> Any:
        """What the client verifies TLS with. Loading a CA bundle (certifi's, or SSL_CERT_FILE /
        SSL_CERT_DIR) costs ~1.3 MiB of memory and a few ms, so it is loaded only when TLS can
        happen: an https:// endpoint, or a proxy configured in the environment (an https://
        proxy is reached over TLS). For plain http:// the client gets a context that trusts no
        CA at all and verifies host names: it is never used (no redirect is followed), and if it
        ever were, it would refuse the connection rather than accept any certificate."""
        from urllib.parse import urlsplit
        from urllib.request import getproxies_environment

        proxies = [scheme for scheme in getproxies_environment() if scheme != "no"]  # "no": NO_PROXY
        if urlsplit(self.endpoint).scheme == "https" or proxies:
            type(self).ca_bundles_loaded += 1
            return True  # httpx's default
        import ssl

        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    def export(self, batch: Batch) -> Outcome | Sequence[Outcome]:
        if self._pool is not None:
            sends = [
                functools.partial(self._post, body, batch.record_key(i))
                for i, body in enumerate(batch.records)
            ]
            results = self._pool.map(sends)
            return [_single(r) for r in results]
        if self.log_format == "ndjson":
            body = b"\n".join(batch.records) + b"\n"
        else:
            body = b"[" + b",".join(batch.records) + b"]"
        return self._post(body, batch.key)

    def _post(self, body: bytes, key: str) -> Outcome:
        with self._client_lock:
            if self._closed:
                raise RuntimeError("the exporter is closed")
            self._posting += 1
        try:
            return self._post_open(body, key)
        finally:
            with self._client_lock:
                self._posting -= 1
                last = self._closed and not self._posting
                client = self._client_obj
            if last and client is not None:
                client.close()

    def _post_open(self, body: bytes, key: str) -> Outcome:
        import httpx

        headers = dict(self.headers)
        headers["Idempotency-Key"] = key
        if self.gzip:
            body = gzip_module.compress(body, compresslevel=5, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            response = self._client().post(self.endpoint, content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome("retry", "timeout")
        except httpx.TransportError:
            return Outcome("retry", "connection_error")
        return classify(response.status_code, response.headers)

    def close(self) -> None:
        """Refuse new requests; the client is closed now, or by the last request still under way
        when it ends. Closing it under a request would not take back what was sent: it would only
        lose the answer, and a batch the receiver took would count as failed, to be sent again."""
        with self._client_lock:
            self._closed = True
            client = self._client_obj if not self._posting else None
        if client is not None:
            client.close()


def _single(result: Any) -> Outcome:
    """A one-record request's outcome: a refusal is final (there is nothing to split)."""
    if not isinstance(result, Outcome):
        return Outcome("retry", "exporter_error")
    return Outcome("drop", result.reason) if result.kind == "split" else result
