"""Masking secrets: the one place that decides what a key, a URL or a header may show.

A leaf module (it imports nothing of lmgate), used wherever text leaves a call: exceptions,
callback kwargs, the log payload, response headers, the proxy's startup line and logs.

Three layers keep secrets out:

* the secrets of one call (its API key, the password and secret query values of its
  ``api_base``) are passed explicitly to ``scrub`` where that call's data leaves it;
* every secret lmgate was configured with or sent is remembered (a bounded set) and masked
  wherever its exact text appears, whatever its shape (``remember_secret``/``scrub``);
* patterns catch the shapes keys usually have (``sk-…``, ``Bearer …``, ``api_key=…``), for
  secrets lmgate never saw.

Secrets shorter than ``MIN_SECRET_CHARS`` are not searched for in free text (masking every
``pw`` in a message would make it unreadable); URLs and headers mask them all the same.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "****"
MIN_SECRET_CHARS = 6
_MAX_REMEMBERED_SECRETS = 512

#: upstream response headers that carry credentials: never forwarded to a client, never logged
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "set-cookie"}
)
# header names whose values are masked when shown (request headers in callback kwargs)
_SECRET_HEADER_WORDS = (
    "authorization",
    "api-key",
    "api_key",
    "apikey",
    "token",
    "secret",
    "password",
    "key",
    "cookie",
)
# query parameter names whose values are secrets, as whole words of the name (split at -, _, .
# and camelCase): ?key=, ?api-key=, ?access_token=, ?sig=, ?code=, ?X-Amz-Signature=; not ?decode=
_SECRET_PARAM_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "sig",
        "signature",
        "secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "code",
        "credential",
        "credentials",
    }
)
_NAME_WORDS = re.compile(r"[-_.\s]+")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")

# each pattern with the (lower-case) words any match of it must contain: a pattern runs only on
# text holding one of its words. A whole response body is scrubbed on every call that has
# callbacks, and "usage" holds "token": running every pattern on it cost more than the rest of
# the log store's request path together (issue 16).
_PATTERNS = [
    # provider-style keys: sk-..., sk-ant-..., sk-proj-...
    (re.compile(r"\b(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{8,}"), ("sk-",)),
    # Authorization header values
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9_\-\.=:/+]{6,}"), ("bearer",)),
    (re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/=]{6,}"), ("basic",)),
    # key=value pairs in URLs, logs and reprs ("access_token" holds "access": "token" alone is no cue)
    (
        re.compile(
            r"(?i)((?:api[_-]?key|x-api-key|access[_-]?token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]{4,}"
        ),
        ("key", "access", "password", "secret"),
    ),
]

# a URL in free text (up to a space or a quote): masked by mask_url
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>`]+")

# words every pattern needs: text without any (most header values) skips the slower regexes
_PATTERN_WORDS = ("sk-", "bearer", "basic", "key", "token", "password", "secret")

_known_lock = threading.Lock()
_known: OrderedDict[str, str] = OrderedDict()
# a snapshot of _known read without the lock (replaced whole when a secret is added)
_known_pairs: tuple[tuple[str, str], ...] = ()
# the remembered secrets structured data is searched for (``mask_data``): credential-long ones only.
# A short configured value (a log destination's "X-Team: search" header) is too likely to be
# ordinary data there, and a stored record masked by mistake cannot be read again
DATA_SECRET_CHARS = 16
_known_long_pairs: tuple[tuple[str, str], ...] = ()
# those, as each is written inside JSON text (quotes, backslashes and newlines escaped)
_known_long_in_json: tuple[str, ...] = ()
# how many times _known changed: what a cached scrub result was computed against
_known_version = 0


def _after_fork() -> None:
    # the child has only the forking thread: a lock another thread held stays held forever
    global _known_lock
    _known_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def mask_key(secret: str | None) -> str | None:
    """A form of ``secret`` safe to show: a short prefix and the last four characters."""
    if secret is None:
        return None
    secret = str(secret)
    if len(secret) < 16:
        return MASK
    return f"{secret[:3]}{MASK}{secret[-4:]}"


def _longest_first(pair: tuple[str, str]) -> int:
    return -len(pair[0])


def remember_secret(secret: str | None) -> None:
    """Mask this exact text wherever it appears from now on."""
    if not secret or len(secret) < MIN_SECRET_CHARS:
        return
    global _known_pairs, _known_long_pairs, _known_long_in_json, _known_version
    with _known_lock:
        if secret in _known:
            _known.move_to_end(secret)
            return
        _known[secret] = mask_key(secret) or MASK
        while len(_known) > _MAX_REMEMBERED_SECRETS:
            _known.popitem(last=False)
        # longest first: a secret that holds another (a key and its own prefix) is masked whole,
        # never cut by the shorter one's mask with the rest of it left in the text
        _known_pairs = tuple(sorted(_known.items(), key=_longest_first))
        _known_long_pairs = tuple(p for p in _known_pairs if len(p[0]) >= DATA_SECRET_CHARS)
        _known_long_in_json = tuple(
            dict.fromkeys(
                form for k, _ in _known_long_pairs for form in (k, json.dumps(k, ensure_ascii=False)[1:-1])
            )
        )
        _known_version += 1
    _scrub_short.cache_clear()  # its answers were given without this secret


def scrub(text: str, secrets: Iterable[str | None] = (), *, data: bool = False) -> str:
    """``text`` with ``secrets``, every remembered secret and every key-shaped string masked;
    ``data``: a value of structured data, where only remembered secrets of ``DATA_SECRET_CHARS``
    or more are searched for."""
    if not text:
        return text
    pairs = _known_long_pairs if data else _known_pairs
    given: list[tuple[str, str]] | None = None
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_CHARS and secret in text:
            if given is None:
                given = []
            given.append((secret, mask_key(secret) or MASK))
    if given is not None:  # with the remembered ones, longest first (as remember_secret orders them)
        pairs = tuple(sorted((*given, *pairs), key=_longest_first))
    for secret, masked in pairs:
        if secret in text:
            text = text.replace(secret, masked)
    if "://" in text:  # a URL in the text: its password and secret query values (mask_url)
        text = _URL_IN_TEXT.sub(_masked_url, text)
    lowered = _folded(text)
    for pattern, words in _PATTERNS:
        for word in words:  # plain loops: this runs on every call's response body and log lines
            if word in lowered:
                masked = pattern.sub(_keep_prefix, text)
                if masked != text:
                    text = masked
                    lowered = _folded(text)
                break
    return text


_often: dict[str, str] = {}  # scrub_often's answers, for the secrets remembered when they were made
_often_for: tuple[tuple[str, str], ...] = ()
_OFTEN_MAX = 1024  # past this many texts, the rest are scrubbed each time


def remembered_secrets() -> tuple[tuple[str, str], ...]:
    """The remembered secrets with their masks: a new tuple each time one is added, so a cache
    of scrubbed text can tell it is stale by identity."""
    return _known_pairs


def scrub_often(text: str) -> str:
    """``scrub(text)`` for a text seen over and over (a log line's message): remembered until
    another secret is remembered."""
    global _often, _often_for
    if _often_for is not _known_pairs:
        _often, _often_for = {}, _known_pairs
    done = _often.get(text)
    if done is None:
        done = scrub(text)
        if len(_often) < _OFTEN_MAX:
            _often[text] = done
    return done


# the letters outside ASCII that a case-insensitive pattern matches to ASCII ones (Python's re:
# İ ı → i, ſ → s; the Kelvin sign lowers to k by itself), so a word check never misses a match
_FOLD = str.maketrans("İıſ", "iis")


def _folded(text: str) -> str:
    return text.lower() if text.isascii() else text.translate(_FOLD).lower()


def _may_match_patterns(text: str) -> bool:
    lowered = text.lower()
    for word in _PATTERN_WORDS:  # loops, not any(generator): this runs on every call's headers
        if word in lowered:
            return True
    return False


def _needs_scrub(text: str, secrets: tuple[str | None, ...]) -> bool:
    """True unless ``text`` surely holds no secret (the fast path for clean text)."""
    for s in secrets:
        if s and s in text:
            return True
    for secret, _ in _known_pairs:
        if secret in text:
            return True
    return "://" in text or _may_match_patterns(text)


def _masked_url(match: re.Match[str]) -> str:
    return mask_url(match.group(0)) or ""


def _keep_prefix(match: re.Match[str]) -> str:
    return match.group(1) + MASK


def scrub_data(value: Any, secrets: Iterable[str | None] = ()) -> Any:
    """A copy of JSON-like data (an upstream error body, say) with every string scrubbed."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {
            scrub(k, secrets) if isinstance(k, str) else k: scrub_data(v, secrets) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_data(v, secrets) for v in value)
    return value


# names whose values are credentials wherever they sit in structured data (a caller's
# metadata={"api_key": ...}, a header dict, a key's admin metadata): the whole value is masked,
# whatever it looks like. Matched on the name folded to lower case with "-" as "_": exact names
# and endings, so "x-api-key", "aws_secret_access_key", "langfuse_secret_key", "refresh_token"
# and "vertex_credentials" are credentials, and "cache_key", "max_tokens" or "key_alias" are not.
# ("token" and "signature" alone are not: a response's logprobs and thinking blocks use them)
_SECRET_NAME_ENDINGS = (
    "api_key",
    "apikey",
    "secret",
    "secret_key",
    "access_key",
    "private_key",
    "password",
    "passwd",
    "_token",
    "credential",
    "credentials",
    "authorization",
    "cookie",
)


@functools.lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    """True for a field name whose value is a credential (``api_key``, ``x-api-key``,
    ``password``, ``access_token``, ``Authorization``, ``vertex_credentials``, …)."""
    folded = name.lower().replace("-", "_")
    return folded.endswith(_SECRET_NAME_ENDINGS)


_SHORT_TEXT = 256


@functools.lru_cache(maxsize=2048)
def _scrub_short(text: str, version: int) -> str:
    # keyed by the version of the remembered secrets it is computed against (read before it is
    # computed): an answer given before a secret was remembered is never reused after
    return scrub(text, data=True)


# deeper than orjson encodes (254 containers): such data is never written as it is (the record's
# encoder puts a marker there), so masking stops there, and a circular structure ends too
_MASK_DEPTH = 255


# what in JSON text may make ``mask_data`` change the data: a key under a credential name (the
# endings of ``is_secret_name``, "-" or "_" alike) and the words scrub's patterns need
_SECRET_NAME_IN_JSON = re.compile(
    "(?:" + "|".join(re.escape(e).replace("_", "[-_]") for e in _SECRET_NAME_ENDINGS) + ')"\\s*:',
    re.IGNORECASE,
)
# a word every name of _SECRET_NAME_ENDINGS holds
_SECRET_NAME_WORDS = ("key", "secret", "passw", "token", "credential", "authorization", "cookie")
_DATA_CUES = (
    "sk-",
    "bearer",
    "basic",
    "api_key",
    "api-key",
    "apikey",
    "access_token",
    "access-token",
    "accesstoken",
    "password",
    "secret",
)


def json_may_need_masking(text: str) -> bool:
    """False when ``mask_data`` would give back unchanged the data ``text`` encodes (as JSON): no
    key under a credential name, no key-shaped text, no URL, no remembered secret it searches
    for. A quick check for the usual clean record; True only means "look closer"."""
    for needle in _known_long_in_json:
        if needle in text:
            return True
    if "://" in text:
        return True
    lowered = _folded(text)
    for cue in _DATA_CUES:  # plain loops: this runs on every call's metadata
        if cue in lowered:
            return True
    for word in _SECRET_NAME_WORDS:  # the name pattern only where one of its words is
        if word in lowered:
            return _SECRET_NAME_IN_JSON.search(text) is not None
    return False


def mask_data(value: Any, secrets: tuple[str | None, ...] = (), _depth: int = 0) -> Any:
    """A copy of JSON-like data with every value under a credential name (``is_secret_name``)
    masked whole and every string scrubbed (``scrub(data=True)``: key shapes, URL secrets, the
    remembered secrets of ``DATA_SECRET_CHARS`` or more): what a stored payload may hold."""
    if isinstance(value, str):
        if len(value) < MIN_SECRET_CHARS:  # shorter than any secret scrub finds
            return value
        if not secrets and len(value) <= _SHORT_TEXT:  # tags, names, ids: the same few on every call
            return _scrub_short(value, _known_version)
        return scrub(value, secrets, data=True)
    if _depth >= _MASK_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            k: (MASK if v and isinstance(k, str) and is_secret_name(k) else mask_data(v, secrets, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_data(v, secrets, _depth + 1) for v in value]
    return value


def is_secret_header(name: str) -> bool:
    """True for a header whose value is (or may be) a credential."""
    known = _secret_header_names.get(name)
    if known is None:
        lowered = name.lower()
        known = lowered in SENSITIVE_HEADERS or any(word in lowered for word in _SECRET_HEADER_WORDS)
        if len(_secret_header_names) >= 512:
            _secret_header_names.clear()  # bounded: a client may send any names
        _secret_header_names[name] = known
    return known


# header name -> is_secret_header's answer: every logged call masks its request's headers, and
# the test per name (a generator over the secret words) cost ~2,000 instructions a header
_secret_header_names: dict[str, bool] = {}


def mask_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of request ``headers`` with credential-bearing values masked (names kept)."""
    if not headers:
        return {}
    return {k: (mask_key(str(v)) if is_secret_header(k) else v) for k, v in headers.items()}


def upstream_headers(headers: Mapping[str, str] | None, secrets: Iterable[str | None] = ()) -> dict[str, str]:
    """An upstream's response headers safe to pass on: ``SENSITIVE_HEADERS`` dropped, values scrubbed."""
    if not headers:
        return {}
    secrets = tuple(secrets)
    kept = {k: str(v) for k, v in headers.items() if k.lower() not in SENSITIVE_HEADERS}
    if not _needs_scrub("\n".join(kept.values()), secrets):  # the usual case: one check for all
        return kept
    return {k: scrub(v, secrets) for k, v in kept.items()}


def scrub_values(values: list[str], secrets: tuple[str | None, ...] = ()) -> list[str]:
    """``values`` scrubbed as ``upstream_headers`` scrubs them: one check for all, the usual clean case."""
    if not _needs_scrub("\n".join(values), secrets):
        return values
    return [scrub(v, secrets) for v in values]


def is_secret_param(name: str) -> bool:
    """True for a URL query parameter whose value is a credential (``key``, ``api-key``, ``sig``, …)."""
    words = _NAME_WORDS.split(_CAMEL.sub(r"\1_\2", name).lower())
    return any(word in _SECRET_PARAM_WORDS for word in words)


@functools.lru_cache(maxsize=256)
def mask_url(url: str | None) -> str | None:
    """``url`` with its password (or a lone user name, often a token) and secret query values masked.

    ``https://user:pw@host/v1?api-key=k&api-version=1`` → ``https://user:****@host/v1?api-key=****&api-version=1``;
    everything else is kept as written.
    """
    if not url or ("@" not in url and "?" not in url):
        return url
    from urllib.parse import unquote

    head, sep, query = url.partition("?")
    query, hash_sep, fragment = query.partition("#")
    scheme, slashes, rest = head.partition("://")
    if slashes:
        netloc, slash, path = rest.partition("/")
        userinfo, at, hostport = netloc.rpartition("@")
        if at:
            user, colon, _password = userinfo.partition(":")
            userinfo = f"{user}:{MASK}" if colon else MASK
            head = f"{scheme}://{userinfo}@{hostport}{slash}{path}"
    if sep:
        parts = []
        for item in query.split("&"):
            name, eq, _value = item.partition("=")
            parts.append(f"{name}={MASK}" if eq and is_secret_param(unquote(name)) else item)
        head += "?" + "&".join(parts)
    return head + hash_sep + fragment


def url_origin(url: str) -> str:
    """Scheme, host and port only: for URLs whose paths and queries often hold tokens (webhooks)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


@functools.lru_cache(maxsize=256)
def url_secrets(url: str | None) -> tuple[str, ...]:
    """The secrets written into ``url``: its password (and the user name beside it), a lone user
    name, the Basic-auth header value they make, and the values of secret query parameters."""
    if not url or ("@" not in url and "?" not in url):
        return ()
    from urllib.parse import unquote, unquote_plus, urlsplit

    out: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        for raw in (password, user if not colon else ""):
            if raw:
                out += [raw, unquote(raw)]
        if userinfo:
            plain = f"{unquote(user)}:{unquote(password)}"
            out.append(base64.b64encode(plain.encode()).decode())
    for item in parts.query.split("&"):
        raw_name, _, raw = item.partition("=")
        if raw and is_secret_param(unquote_plus(raw_name)):
            # as written (percent-encoded, maybe with +) and as decoded both ways: an error may echo any
            out += [raw, unquote(raw), unquote_plus(raw)]
    return tuple(dict.fromkeys(out))


def header_secrets(headers: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The values of credential-bearing ``headers`` (``is_secret_header``), configured as
    ``extra_headers``, say; for ``Bearer x``/``Basic x`` also the credential ``x`` alone."""
    if not headers or not isinstance(headers, Mapping):
        return ()
    out: list[str] = []
    for name, value in headers.items():
        if value is None or not is_secret_header(str(name)):
            continue
        text = str(value).strip()
        out.append(text)
        scheme, space, credential = text.partition(" ")
        if space and scheme.lower() in ("bearer", "basic", "token") and credential.strip():
            out.append(credential.strip())
    return tuple(dict.fromkeys(s for s in out if s))


# the LogRecord attribute carrying a proxy line's fields (lmgate.proxy.logs): masked like the message
LOG_FIELDS = "lmgate_fields"


def scrub_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A log line's fields with every text value scrubbed (``scrub_often``: the same few values
    come on every line); numbers and other values as they are."""
    return {k: scrub_often(v) if type(v) is str else v for k, v in fields.items()}


class MaskingFilter(logging.Filter):
    """A logging filter for handlers: masks secrets in the message, the fields (a proxy line's
    path, model, deployment…) and the traceback of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        fields = getattr(record, LOG_FIELDS, None)
        if fields:
            setattr(record, LOG_FIELDS, scrub_fields(fields))
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


__all__ = [
    "MASK",
    "MIN_SECRET_CHARS",
    "MaskingFilter",
    "SENSITIVE_HEADERS",
    "header_secrets",
    "is_secret_header",
    "is_secret_name",
    "is_secret_param",
    "json_may_need_masking",
    "mask_data",
    "mask_headers",
    "mask_key",
    "mask_url",
    "remember_secret",
    "remembered_secrets",
    "scrub",
    "scrub_data",
    "scrub_fields",
    "scrub_often",
    "upstream_headers",
    "scrub_values",
    "url_origin",
    "url_secrets",
]
