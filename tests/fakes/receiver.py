"""A fake log receiver: a real HTTP/1.1 server on 127.0.0.1 that records batches sent by a webhook logger,
and can fail, hang, dedupe, refuse bodies that are too large (413) or hold a poisoned record (400),
or go away entirely (stop) and come back on the same port (start)."""

from __future__ import annotations

import collections
import gzip
import json
import threading
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .provider import BackgroundHTTPServer, BaseHandler

__all__ = ["LogReceiver", "ReceivedRequest"]

HOLD_BOUND_S = 30.0


@dataclass
class ReceivedRequest:
    """One request as received. ``status`` is None while the handler is still held."""

    path: str
    headers: dict[str, str]
    body: bytes
    decoded_body: bytes
    records: list[Any]
    method: str = "POST"
    query: str = ""
    status: int | None = None
    duplicate: bool = False  # answered 2xx but records dropped (dedupe_by_idempotency_key)
    parse_error: str | None = None  # why the body could not be decoded (answered 400)


def decode_records(headers: dict[str, str], body: bytes) -> tuple[bytes, list[Any], str | None]:
    """(decoded body, records, error). gzip/deflate undone; JSON array, JSON object or NDJSON parsed."""
    encoding = headers.get("content-encoding", "").strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            decoded = gzip.decompress(body)
        elif encoding == "deflate":
            decoded = zlib.decompress(body)
        else:
            decoded = body
    except (OSError, EOFError, zlib.error) as exc:
        return body, [], f"bad {encoding} body: {exc}"
    if not decoded.strip():
        return decoded, [], None
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = decoded.decode("utf-8")
        if "ndjson" in content_type or "jsonl" in content_type or "json-lines" in content_type:
            return decoded, [json.loads(line) for line in text.splitlines() if line.strip()], None
        try:
            obj = json.loads(text)
        except ValueError:
            # No (or a wrong) content type: accept NDJSON if every line is JSON.
            return decoded, [json.loads(line) for line in text.splitlines() if line.strip()], None
    except (UnicodeDecodeError, ValueError) as exc:
        return decoded, [], f"bad JSON body: {exc}"
    return decoded, (list(obj) if isinstance(obj, list) else [obj]), None


class _ReceiverHandler(BaseHandler):
    def dispatch(self) -> None:
        body = self.read_body()
        headers = self.header_dict()
        decoded, records, error = decode_records(headers, body)
        url = urlsplit(self.path)
        req = ReceivedRequest(
            path=url.path,
            headers=headers,
            body=body,
            decoded_body=decoded,
            records=records,
            method=self.command,
            query=url.query,
            parse_error=error,
        )
        rx: LogReceiver = self.server.owner
        status, extra = rx._receive(req)
        self.send_json(
            status,
            {
                "ok": 200 <= status < 300,
                "accepted": 0 if req.duplicate or status >= 300 else len(req.records),
            },
            extra,
        )


class LogReceiver(BackgroundHTTPServer):
    """Records what a webhook logger sends. Any path and method are accepted. Thread-safe."""

    handler_class = _ReceiverHandler

    def __init__(self, host: str = "127.0.0.1", port: int = 0, path: str = "/logs") -> None:
        super().__init__(host, port)
        self.path = path
        self._cond = threading.Condition()
        self._all: list[ReceivedRequest] = []
        self._ok: list[ReceivedRequest] = []
        self._records: list[Any] = []
        self._failures: collections.deque[tuple[int, dict[str, str]]] = collections.deque()
        self._status = 200
        self._status_headers: dict[str, str] = {}
        self._released = threading.Event()
        self._released.set()
        self._seen_keys: set[str] = set()
        self.dedupe_by_idempotency_key = False
        # refusals a real receiver makes: 413 to a body over this many bytes (as sent), 400 to a
        # body whose decoded text holds this marker (a "poisoned" record)
        self.max_body_bytes: int | None = None
        self.poison: bytes | None = None

    # -- public API ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Requests answered 2xx, in completion order."""
        with self._cond:
            return list(self._ok)

    @property
    def all_requests(self) -> list[ReceivedRequest]:
        """Every request received (failed and still-held ones too), in arrival order."""
        with self._cond:
            return list(self._all)

    @property
    def records(self) -> list[Any]:
        """Records of the 2xx requests (duplicates dropped when deduping), in order."""
        with self._cond:
            return list(self._records)

    def fail_next(self, n: int, status: int = 500, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``headers``), then go back to normal."""
        with self._cond:
            self._failures.extend((status, dict(headers or {})) for _ in range(n))

    def set_status(self, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer every request with ``status`` until changed; 200 restores normal service."""
        with self._cond:
            self._status = status
            self._status_headers = dict(headers or {})

    def hold(self) -> None:
        """Make handlers wait (bounded 30 s) before answering, until release()."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait_for_records(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._records) >= n, timeout)

    def wait_until(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(records)`` holds for the records received so far."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(list(self._records)), timeout)

    def wait_for_requests(self, n: int, timeout: float = 10.0, ok_only: bool = False) -> bool:
        """Wait until ``n`` requests have arrived (any outcome; with ok_only, ``n`` answered 2xx)."""
        with self._cond:
            seq = self._ok if ok_only else self._all
            return self._cond.wait_for(lambda: len(seq) >= n, timeout)

    def reset(self) -> None:
        """Forget everything received and every scripted failure; answer 200 again."""
        with self._cond:
            self._all.clear()
            self._ok.clear()
            self._records.clear()
            self._failures.clear()
            self._seen_keys.clear()
            self._status, self._status_headers = 200, {}
            self.max_body_bytes = None
            self.poison = None
        self._released.set()

    def stop(self) -> None:
        self._released.set()  # never leave a held handler behind
        super().stop()

    # -- internals -------------------------------------------------------------------------------
    def _receive(self, req: ReceivedRequest) -> tuple[int, dict[str, str]]:
        with self._cond:
            self._all.append(req)
            self._cond.notify_all()
        if not self._released.is_set():
            self.wait_event(self._released, HOLD_BOUND_S)
        if self.stopping.is_set():
            # stop() cut this connection while it was held: the client never gets an answer.
            raise ConnectionAbortedError("receiver stopped while the request was held")
        with self._cond:
            if self._failures:
                status, headers = self._failures.popleft()
            elif self._status != 200:
                status, headers = self._status, self._status_headers
            elif self.max_body_bytes is not None and len(req.body) > self.max_body_bytes:
                status, headers = 413, {}
            elif req.parse_error is not None or (self.poison is not None and self.poison in req.decoded_body):
                status, headers = 400, {}
            else:
                status, headers = 200, {}
            if 200 <= status < 300:
                key = req.headers.get("idempotency-key")
                if self.dedupe_by_idempotency_key and key is not None and key in self._seen_keys:
                    req.duplicate = True
                else:
                    self._records.extend(req.records)
                if key is not None:
                    self._seen_keys.add(key)
                self._ok.append(req)
            req.status = status
            self._cond.notify_all()
        return status, headers
