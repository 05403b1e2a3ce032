"""AWS Signature Version 4 by botocore's ``SigV4Auth``, kept per deployment and fed a light request.

botocore computes every part of the signature here (canonical request, string to sign, the HMAC
chain): nothing of the algorithm is written again. What is cut is the cost around it, measured at
~60 µs of a ~100 µs signature on a Bedrock call:

* ``AWSRequest`` keeps its headers in an ``email.message.Message`` and re-prepares the whole request
  (URL, headers, body) every time the signer reads ``request.body``; ``SigningRequest`` holds the
  same attributes in plain containers (``Headers``: case-insensitive, as ``HTTPHeaders`` is);
* ``headers_to_sign`` is built twice per signature by botocore (for the canonical request and again
  for the ``Authorization`` header); it is built once here;
* the signing key (four HMACs over the secret, the day, the region and the service) is derived once
  per day and credentials instead of per request, as the AWS SDKs cache it;
* the normalised, escaped path of a URL is kept (a deployment posts to one or two paths);
* each HMAC goes through ``hmac.digest`` (one C call) instead of a Python ``hmac.HMAC`` object.

The signer is made once per deployment (``Signer``) and re-made when the credentials change (a
role's refreshable credentials renew themselves; their frozen values are compared each call).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Iterator, Mapping
from typing import Any


class Headers:
    """A case-insensitive header map with the part of ``HTTPHeaders``' API botocore's signer uses."""

    __slots__ = ("_items",)

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {}  # lower-case name -> (name as given, value)
        if headers:
            for name, value in headers.items():
                self._items[name.lower()] = (name, value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        # HTTPHeaders appends a second value; botocore deletes before it sets, so replacing is the same
        self._items[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        self._items.pop(name.lower(), None)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def get(self, name: str, default: Any = None) -> Any:
        found = self._items.get(name.lower())
        return default if found is None else found[1]

    def get_all(self, name: str, default: Any = None) -> Any:
        found = self._items.get(name.lower())
        return default if found is None else [found[1]]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items.values())


class SigningRequest:
    """The attributes of an ``AWSRequest`` that ``SigV4Auth`` reads and writes, held plainly."""

    __slots__ = ("method", "url", "headers", "body", "params", "context")

    def __init__(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> None:
        self.method = method
        self.url = url
        self.headers = Headers(headers)
        self.body = body
        self.params: dict[str, str] = {}  # the query stays in the URL, where botocore reads it from
        self.context: dict[str, Any] = {}


@functools.lru_cache(maxsize=256)
def _normalized_path(auth_class: type, path: str) -> str:
    return auth_class._normalize_url_path(None, path)  # type: ignore[attr-defined, no-any-return]


@functools.lru_cache(maxsize=1)
def _signer_class() -> type:
    from botocore.auth import SIGNED_HEADERS_BLACKLIST, SigV4Auth, _host_from_url

    unsigned = frozenset(SIGNED_HEADERS_BLACKLIST)

    class CachingSigV4Auth(SigV4Auth):  # type: ignore[misc]
        """botocore's signer with the per-request work it repeats done once (see the module's doc)."""

        def __init__(self, credentials: Any, service_name: str, region_name: str) -> None:
            super().__init__(credentials, service_name, region_name)
            self._signing_key: tuple[str, bytes] | None = None  # (day, key)

        def headers_to_sign(self, request: Any) -> Headers:
            cached = request.context.get("lmgate_headers_to_sign")
            if cached is not None:
                return cached  # type: ignore[no-any-return]
            chosen = Headers()
            for name, value in request.headers.items():
                lname = name.lower()
                if lname not in unsigned:
                    chosen[lname] = value
            if "host" not in chosen:
                chosen["host"] = _host_from_url(request.url)
            request.context["lmgate_headers_to_sign"] = chosen
            return chosen

        def _sign(self, key: bytes, msg: str, hex: bool = False) -> Any:
            # the same HMAC-SHA256 through hmac.digest, the one-shot C path (hmac.new builds a
            # Python object around it per call)
            mac = hmac.digest(key, msg.encode("utf-8"), "sha256")
            return mac.hex() if hex else mac

        def _normalize_url_path(self, path: str) -> str:
            return _normalized_path(SigV4Auth, path)

        def signature(self, string_to_sign: str, request: Any) -> str:
            day = request.context["timestamp"][0:8]
            cached = self._signing_key
            if cached is None or cached[0] != day:
                k_date = self._sign(f"AWS4{self.credentials.secret_key}".encode(), day)
                k_region = self._sign(k_date, self._region_name)
                k_service = self._sign(k_region, self._service_name)
                cached = self._signing_key = (day, self._sign(k_service, "aws4_request"))
            return self._sign(cached[1], string_to_sign, hex=True)  # type: ignore[no-any-return]

    return CachingSigV4Auth


class Signer:
    """SigV4 for one deployment: botocore's signer, kept while its credentials' values stay the same."""

    def __init__(self, credentials: Any, service: str, region: str) -> None:
        self.credentials = credentials  # botocore credentials; a role's refresh themselves
        self.service = service
        self.region = region
        self._frozen: Any = None
        self._auth: Any = None

    def headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """``headers`` with the signature's (``Authorization``, ``X-Amz-Date``, the session token)."""
        frozen = self.credentials.get_frozen_credentials()
        auth = self._auth
        if auth is None or frozen != self._frozen:  # first call, or refreshed credentials
            auth = self._auth = _signer_class()(frozen, self.service, self.region)
            self._frozen = frozen
        request = SigningRequest(method, url, headers, body)
        auth.add_auth(request)
        return dict(request.headers.items())
