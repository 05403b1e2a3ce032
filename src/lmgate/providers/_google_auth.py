"""OAuth access tokens for Vertex AI, obtained and refreshed through ``google-auth``.

A ``GoogleTokenSource`` holds one set of Google credentials — a service account's JSON (given
as text, as a dict or as a path to a file) or the environment's default credentials
(``google.auth.default()``: ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's application-default
login, the metadata server) — and the current access token, refreshed before it expires.
Sources are shared per credentials, so every call of a deployment reuses one token.

This module is imported only when a ``vertex_ai/`` call is made: ``google-auth`` is the
``vertex`` extra. Its HTTP transport is ``google.auth.transport.requests`` when ``requests`` is
installed (google-auth's own default), else ``HttpxRequest`` below, google-auth's transport
interface over httpx, so no other HTTP stack is needed.

Secrets: the service account's private key (and the JSON holding it) and every token are
registered with ``lmgate._secrets.remember_secret``, so they are masked wherever text leaves.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import timezone
from typing import Any

import orjson

from .. import exceptions as exc
from .._secrets import remember_secret, scrub
from .base import TokenSource

PROVIDER = "vertex_ai"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
#: a token this close to its expiry is refreshed before use (google-auth's own threshold is 3m45s)
REFRESH_MARGIN_S = 300.0
#: a token whose credentials report no expiry is refreshed after this long
DEFAULT_LIFETIME_S = 3000.0
_MAX_SOURCES = 64


class HttpxRequest:
    """google-auth's ``google.auth.transport.Request`` interface over an ``httpx.Client``.

    ``__call__(url, method, body, headers, timeout)`` returns an object with ``status``,
    ``headers`` and ``data`` (bytes), and raises ``google.auth.exceptions.TransportError`` when
    the request cannot be made — what google-auth's credentials expect of any transport.
    """

    def __init__(self, client: Any = None) -> None:
        import httpx

        self._client = client or httpx.Client()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        import httpx
        from google.auth import exceptions as gexc

        try:
            response = self._client.request(
                method, url, content=body, headers=dict(headers or {}), timeout=timeout or 120.0
            )
        except httpx.HTTPError as error:
            raise gexc.TransportError(error) from error
        return _HttpxResponse(response.status_code, dict(response.headers), response.content)


class _HttpxResponse:
    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


_shared_transport: Any = None
_transport_lock = threading.Lock()


def _transport() -> Any:
    """One transport (and its connection pool) for every token source of the process."""
    global _shared_transport
    with _transport_lock:
        if _shared_transport is None:
            try:
                import requests  # noqa: F401  (google-auth's default transport needs it)
                from google.auth.transport.requests import Request
            except ImportError:
                _shared_transport = HttpxRequest()
            else:
                _shared_transport = Request()
        return _shared_transport


class GoogleTokenSource(TokenSource):
    """One set of Google credentials and its current access token.

    ``load`` returns ``(credentials, project id or None)``; it runs once, at the first need
    (reading a file or asking ``google.auth.default()`` is I/O). ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        load: Callable[[], tuple[Any, str | None]],
        clock: Callable[[], float] = time.time,
        transport: Any = None,
    ) -> None:
        self._load = load
        self._clock = clock
        self._transport = transport
        self._lock = threading.Lock()
        self._loaded: tuple[Any, str | None] | None = None
        self._header: dict[str, str] | None = None
        self._expires_at = 0.0
        self.refreshes = 0  # how many tokens were fetched (tests, diagnostics)

    def _credentials(self) -> tuple[Any, str | None]:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def project_id(self) -> str | None:
        with self._lock:
            return self._credentials()[1]

    def cached_header(self) -> dict[str, str] | None:
        header = self._header
        if header is not None and self._clock() < self._expires_at - REFRESH_MARGIN_S:
            return header
        return None

    def auth_header(self, refused: dict[str, str] | None = None) -> dict[str, str]:
        with self._lock:
            header = self.cached_header()
            if header is not None and (refused is None or header != refused):
                return header  # good, or already replaced by a call that was refused the same token
            credentials, _ = self._credentials()
            if self._transport is None:
                self._transport = _transport()
            from google.auth import exceptions as gexc

            try:
                credentials.refresh(self._transport)
            except gexc.TransportError as error:
                raise exc.APIConnectionError(
                    f"vertex_ai: the token endpoint could not be reached: {scrub(str(error))}",
                    PROVIDER,
                ) from None
            except gexc.GoogleAuthError as error:
                raise exc.AuthenticationError(
                    f"vertex_ai: Google refused the credentials' token request: {scrub(str(error))}",
                    PROVIDER,
                    status_code=401,
                ) from None
            token = str(credentials.token or "")
            remember_secret(token)
            self.refreshes += 1
            expiry = getattr(credentials, "expiry", None)
            if expiry is not None:  # google-auth keeps a naive UTC datetime
                self._expires_at = expiry.replace(tzinfo=timezone.utc).timestamp()
            else:
                self._expires_at = self._clock() + DEFAULT_LIFETIME_S
            self._header = {"Authorization": f"Bearer {token}"}
            return self._header


# ---------------------------------------------------------------- credentials


def _remember_service_account(info: Mapping[str, Any]) -> None:
    key = info.get("private_key")
    if isinstance(key, str):
        remember_secret(key)
        remember_secret(key.replace("\n", "\\n"))  # as it is written inside JSON text
        body = "".join(line for line in key.splitlines() if line and not line.startswith("-----"))
        remember_secret(body)
    remember_secret(info.get("private_key_id"))


def remember_credentials(value: Any) -> None:
    """Mask a ``vertex_credentials`` value's secrets from now on (JSON text or a dict; a path is no secret)."""
    if isinstance(value, Mapping):
        _remember_service_account(value)
    elif isinstance(value, str) and value.strip().startswith("{"):
        remember_secret(value)
        try:
            info = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if isinstance(info, dict):
            _remember_service_account(info)


def _info_from(value: Any) -> dict[str, Any] | None:
    """The credentials dict a ``vertex_credentials`` value holds; None means "the environment's"."""
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise exc.BadRequestError(
            "vertex_credentials must be a service account's JSON (text or dict) or a path to one, "
            f"not {type(value).__name__}",
            PROVIDER,
        )
    text = value.strip()
    if not text.startswith("{"):
        path = os.path.expanduser(text)
        try:
            with open(path, "rb") as f:
                text = f.read().decode()
        except OSError as error:
            raise exc.AuthenticationError(
                f"vertex_credentials names a file that cannot be read ({path}): {error.strerror}; "
                "pass the service account's JSON, a readable path, or leave it unset for the "
                "environment's default credentials",
                PROVIDER,
                status_code=401,
            ) from None
    remember_secret(text)
    try:
        info = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise exc.AuthenticationError(
            "vertex_credentials is not valid JSON (its text is not shown: it may hold a private key)",
            PROVIDER,
            status_code=401,
        ) from None
    if not isinstance(info, dict):
        raise exc.AuthenticationError("vertex_credentials must hold a JSON object", PROVIDER, status_code=401)
    return info


def _loader(info: dict[str, Any] | None) -> Callable[[], tuple[Any, str | None]]:
    def load() -> tuple[Any, str | None]:
        import google.auth
        from google.auth import exceptions as gexc

        try:
            if info is None:
                credentials, project = google.auth.default(scopes=list(SCOPES))
            elif info.get("type") == "service_account":
                from google.oauth2 import service_account

                credentials = service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
                project = info.get("project_id")
            elif info.get("type") == "authorized_user":  # gcloud's application-default login
                from google.oauth2 import credentials as user_credentials

                credentials = user_credentials.Credentials.from_authorized_user_info(
                    info, scopes=list(SCOPES)
                )
                project = info.get("quota_project_id")
            else:  # only the two kinds that cannot run code or reach other hosts are taken from a value
                raise exc.AuthenticationError(
                    f"vertex_credentials of type {info.get('type')!r} are not taken from a value: use a "
                    "service_account or authorized_user JSON, or point GOOGLE_APPLICATION_CREDENTIALS at the "
                    "file and leave vertex_credentials unset",
                    PROVIDER,
                    status_code=401,
                )
        except (gexc.GoogleAuthError, ValueError) as error:
            raise exc.AuthenticationError(
                f"vertex_ai: no usable Google credentials: {scrub(str(error))}",
                PROVIDER,
                status_code=401,
            ) from None
        return credentials, project

    return load


_sources: OrderedDict[Any, GoogleTokenSource] = OrderedDict()
_sources_lock = threading.Lock()


def token_source(credentials: Any) -> GoogleTokenSource:
    """The shared token source for a ``vertex_credentials`` value (None: the environment's).

    A path is read once per process: a rotated key file takes effect after a restart.
    """
    key: Any
    if credentials is None or credentials == "":
        key = ("env", os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))
    elif isinstance(credentials, str):
        key = ("text", credentials)
    elif isinstance(credentials, Mapping):
        key = ("dict", orjson.dumps(dict(credentials), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
    else:
        key = None
    with _sources_lock:
        source = _sources.get(key) if key is not None else None
        if source is not None:
            _sources.move_to_end(key)
            return source
    info = _info_from(credentials)
    if info is not None:
        _remember_service_account(info)
    with _sources_lock:
        source = _sources.get(key)
        if source is None:
            source = _sources[key] = GoogleTokenSource(_loader(info))
            while len(_sources) > _MAX_SOURCES:
                _sources.popitem(last=False)
        return source
