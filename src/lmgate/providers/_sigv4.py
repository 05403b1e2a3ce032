"""AWS Signature Version 4 by botocore's ``SigV4Auth``, kept per deployment and fed a light request.

botocore computes every part of the signature here (canonical request, string to sign, the HMAC
chain): nothing of the algorithm is written again. What is cut is the cost around it, measured at
~60 µs of a ~100 µs signature on a Bedrock call:

* ``AWSRequest`` keeps its headers in an ``email.message.Message`` and re-prepares the whole request
  (URL, headers, body) every time the signer reads ``request.body``; ``SigningRequest`` holds the
  same attributes in plain containers (``Headers``: case-insensitive, as ``HTTPHeaders`` is);
* ``headers_to_sign`` and the signed-headers list are built twice per signature by botocore (for the
  canonical request and again for the ``Authorization`` header); each is built once here;
* the signing key (four HMACs over the secret, the day, the region and the service) is kept per
  day and secret instead of derived per request, as the AWS SDKs cache it: botocore's own HMAC
  calls are remembered by their inputs (``_sign``), so a new day or secret derives a new key;
* the normalised, escaped path of a URL is kept (a deployment posts to one or two paths);
* the timestamp is formatted once a second (from an injectable clock) and ``add_auth`` does not
  pass the canonical request to ``logger.debug`` four times.

The signer is made once per deployment (``Signer``) and re-made when the credentials change (a
role's refreshable credentials renew themselves; their frozen values are compared each call).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any


class Headers:
    """A case-insensitive header map with the part of ``HTTPHeaders``' API botocore's signer uses."""

    __slots__ = ("_items", "signed")

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        # lower-case name -> (name as given, value)
        self._items: dict[str, tuple[str, str]] = (
            {name.lower(): (name, value) for name, value in headers.items()} if headers else {}
        )
        self.signed: str | None = None  # the signed-headers list, once made (headers_to_sign's map)

    def __contains__(self, name: object) -> bool:
        try:
            return name.lower() in self._items  # type: ignore[attr-defined]
        except AttributeError:  # not a string
            return False

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        # HTTPHeaders appends a second value; botocore deletes before it sets, so replacing is the same
        self._items[name.lower()] = (name, value)
        self.signed = None

    def __delitem__(self, name: str) -> None:
        self._items.pop(name.lower(), None)
        self.signed = None

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
    from botocore.auth import SIGNED_HEADERS_BLACKLIST, SIGV4_TIMESTAMP, SigV4Auth, _host_from_url
    from botocore.exceptions import NoCredentialsError

    unsigned = frozenset(SIGNED_HEADERS_BLACKLIST)

    class CachingSigV4Auth(SigV4Auth):  # type: ignore[misc]
        """botocore's signer with the per-request work it repeats done once (see the module's doc)."""

        def __init__(
            self,
            credentials: Any,
            service_name: str,
            region_name: str,
            clock: Callable[[], float] = time.time,
        ) -> None:
            super().__init__(credentials, service_name, region_name)
            self._derived: dict[tuple[bytes, str], bytes] = {}  # (key, message) -> HMAC, see _sign
            self._canonical: dict[tuple[tuple[str, str], ...], str] = {}  # see canonical_headers
            self._keyed: tuple[bytes, Any] | None = None  # (signing key, its HMAC state), see _sign
            self._clock = clock
            self._stamp: tuple[int, str] = (-1, "")  # (second, its SigV4 timestamp)

        def add_auth(self, request: Any) -> None:
            # botocore's add_auth, the same steps in the same order, with two changes: the time comes
            # from the clock given (tests move it across midnight) and is formatted once a second
            # (datetime.now + strftime cost more than the HMAC of the signature), and the canonical
            # request and string to sign are not passed to logger.debug (four calls a signature)
            if self.credentials is None:
                raise NoCredentialsError()
            request.context["timestamp"] = self._timestamp()
            self._modify_request_before_signing(request)
            canonical_request = self.canonical_request(request)
            string_to_sign = self.string_to_sign(request, canonical_request)
            signature = self.signature(string_to_sign, request)
            self._inject_signature_to_request(request, signature)

        def _timestamp(self) -> str:
            second = int(self._clock())
            stamp = self._stamp
            if stamp[0] != second:
                stamp = self._stamp = (second, time.strftime(SIGV4_TIMESTAMP, time.gmtime(second)))
            return stamp[1]

        def headers_to_sign(self, request: Any) -> Headers:
            cached = request.context.get("lmgate_headers_to_sign")
            if cached is not None:
                return cached  # type: ignore[no-any-return]
            chosen = Headers()
            chosen._items = {
                lname: (lname, value)
                for lname, value in ((name.lower(), value) for name, value in request.headers.items())
                if lname not in unsigned
            }
            if "host" not in chosen:
                chosen["host"] = _host_from_url(request.url)
            request.context["lmgate_headers_to_sign"] = chosen
            return chosen

        def canonical_headers(self, headers_to_sign: Any) -> str:
            # a pure function of the signed headers, which repeat from call to call within a second
            # (host, content type, date, token): botocore's result is kept for the same items
            if not isinstance(headers_to_sign, Headers):
                return super().canonical_headers(headers_to_sign)  # type: ignore[no-any-return]
            key = tuple(headers_to_sign._items.values())
            found = self._canonical.get(key)
            if found is None:
                if len(self._canonical) >= 64:  # one entry a second and header set: cleared, not grown
                    self._canonical.clear()
                found = self._canonical[key] = super().canonical_headers(headers_to_sign)
            return found

        def signed_headers(self, headers_to_sign: Any) -> str:
            # asked twice per signature (canonical request, Authorization header) for the same map
            signed = getattr(headers_to_sign, "signed", None)
            if signed is None:
                signed = super().signed_headers(headers_to_sign)
                if isinstance(headers_to_sign, Headers):
                    headers_to_sign.signed = signed
            return signed  # type: ignore[no-any-return]

        def _sign(self, key: bytes, msg: str, hex: bool = False) -> Any:
            # botocore derives the signing key with four HMACs (secret -> day -> region -> service ->
            # "aws4_request") in ``signature``, every request; their results are kept here, keyed by
            # what they are computed from, so a new day or a new secret derives afresh by itself.
            # The last HMAC (hex, over the string to sign) is new every request: the same
            # HMAC-SHA256 botocore computes, from a copy of the state keyed with the signing key
            # (OpenSSL 3 fetches the digest and sets the key up again for every new HMAC)
            if hex:
                keyed = self._keyed
                if keyed is None or keyed[0] != key:
                    keyed = self._keyed = (key, hmac.new(key, digestmod=hashlib.sha256))
                mac = keyed[1].copy()
                mac.update(msg.encode("utf-8"))
                return mac.hexdigest()
            found = self._derived.get((key, msg))
            if found is None:
                if len(self._derived) >= 64:  # a few days' keys at most; never grows without end
                    self._derived.clear()
                found = self._derived[(key, msg)] = super()._sign(key, msg)
            return found

        def _normalize_url_path(self, path: str) -> str:
            return _normalized_path(SigV4Auth, path)

    return CachingSigV4Auth


class Signer:
    """SigV4 for one deployment: botocore's signer, kept while its credentials' values stay the same."""

    def __init__(
        self, credentials: Any, service: str, region: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.credentials = credentials  # botocore credentials; a role's refresh themselves
        self.service = service
        self.region = region
        self.clock = clock  # seconds since the epoch, UTC (tests pass their own)
        self._frozen: Any = None
        self._auth: Any = None

    def headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """``headers`` with the signature's (``Authorization``, ``X-Amz-Date``, the session token)."""
        frozen = self.credentials.get_frozen_credentials()
        auth = self._auth
        if auth is None or frozen != self._frozen:  # first call, or refreshed credentials
            auth = self._auth = _signer_class()(frozen, self.service, self.region, self.clock)
            self._frozen = frozen
        request = SigningRequest(method, url, headers, body)
        auth.add_auth(request)
        return dict(request.headers.items())
