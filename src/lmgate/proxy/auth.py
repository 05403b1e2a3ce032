"""Who is calling: the identity a request's key stands for, and the backends that decide it.

A request's key is read from its headers once (``presented_key``) by the authentication
middleware (``middleware.py``); a ``KeyBackend`` turns it into a ``UserAPIKeyAuth`` or
refuses it with a 401 ``ProxyError``. The master key of ``general_settings`` is the first
backend (``MasterKeyBackend``); a backend of virtual keys (keys, teams and budgets kept in a
database, behind a cache) is another implementation of the same protocol: it is async so it
may wait on a store, and everything it knows about the key goes on the identity it returns.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any, Protocol

from starlette.requests import HTTPConnection

from .errors import ProxyError


def hash_key(key: str | None) -> str | None:
    """The SHA-256 hex digest of an API key (what logs and hooks see instead of the key)."""
    if not key:
        return None
    return hashlib.sha256(key.encode()).hexdigest()


class UserAPIKeyAuth:
    """Who is calling: the reference's ``UserAPIKeyAuth`` shape, with the key hashed.

    ``api_key`` and ``token`` both hold the SHA-256 of the caller's key. Readable as
    attributes or, like a dict, with ``[]`` and ``get`` (hooks written for the reference do
    both). A backend fills in what it knows; the master-key backend knows the hash and the
    role only. ``models`` and ``team_models`` empty mean every model; ``None`` limits and
    budgets mean none. The names are the reference's, so its hooks read what they expect.
    """

    __slots__ = (
        "api_key",
        "token",
        "key_alias",
        "key_name",
        "user_id",
        "user_email",
        "team_id",
        "team_alias",
        "end_user_id",
        "org_id",
        "user_role",
        "models",
        "team_models",
        "spend",
        "max_budget",
        "expires",
        "tpm_limit",
        "rpm_limit",
        "max_parallel_requests",
        "metadata",
        "team_metadata",
        "parent_otel_span",
        # the budgets and limits of the key's team, user and end user, and the key's own window
        # (the reference's names; None when unknown or unset)
        "budget_duration",
        "tags",
        "team_spend",
        "team_max_budget",
        "team_rpm_limit",
        "team_tpm_limit",
        "user_spend",
        "user_max_budget",
        "user_rpm_limit",
        "user_tpm_limit",
        "end_user_max_budget",
    )

    def __init__(
        self,
        key_hash: str | None,
        *,
        user_role: str | None = None,
        end_user_id: str | None = None,
        key_alias: str | None = None,
        key_name: str | None = None,
        user_id: str | None = None,
        user_email: str | None = None,
        team_id: str | None = None,
        team_alias: str | None = None,
        org_id: str | None = None,
        models: list[str] | None = None,
        team_models: list[str] | None = None,
        spend: float = 0.0,
        max_budget: float | None = None,
        expires: str | None = None,
        tpm_limit: int | None = None,
        rpm_limit: int | None = None,
        max_parallel_requests: int | None = None,
        metadata: dict[str, Any] | None = None,
        team_metadata: dict[str, Any] | None = None,
    ) -> None:
        self.api_key = key_hash
        self.token = key_hash
        self.key_alias = key_alias
        self.key_name = key_name
        self.user_id = user_id
        self.user_email = user_email
        self.team_id = team_id
        self.team_alias = team_alias
        self.end_user_id = end_user_id
        self.org_id = org_id
        self.user_role = user_role
        self.models: list[str] = models if models is not None else []
        self.team_models: list[str] = team_models if team_models is not None else []
        self.spend = spend
        self.max_budget = max_budget
        self.expires = expires
        self.tpm_limit = tpm_limit
        self.rpm_limit = rpm_limit
        self.max_parallel_requests = max_parallel_requests
        self.metadata: dict[str, Any] = metadata if metadata is not None else {}
        self.team_metadata: dict[str, Any] = team_metadata if team_metadata is not None else {}
        self.parent_otel_span: Any = None  # the reference's hooks read it; lmgate has no proxy-side span
        self.budget_duration: str | None = None
        self.tags: list[str] = []
        self.team_spend: float | None = None
        self.team_max_budget: float | None = None
        self.team_rpm_limit: int | None = None
        self.team_tpm_limit: int | None = None
        self.user_spend: float | None = None
        self.user_max_budget: float | None = None
        self.user_rpm_limit: int | None = None
        self.user_tpm_limit: int | None = None
        self.end_user_max_budget: float | None = None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def for_request(self, end_user_id: str | None) -> UserAPIKeyAuth:
        """A copy naming one request's end user (the body's ``user``): the identity a backend
        returns may be shared by requests (the master key's is)."""
        other = copy.copy(self)
        other.end_user_id = end_user_id
        return other

    def for_hooks(self) -> UserAPIKeyAuth:
        """A copy of its own for one request's hooks (their ``user_api_key_dict``): the identity a
        backend returns is shared by the key's requests (the master key's, a cached key row's),
        and what a hook changes on it (its lists, its metadata) must not reach the next request
        (the reference builds one per request)."""
        other = copy.copy(self)
        other.models = list(self.models)
        other.team_models = list(self.team_models)
        other.tags = list(self.tags)
        other.metadata = copy.deepcopy(self.metadata)
        other.team_metadata = copy.deepcopy(self.team_metadata)
        return other

    def model_dump(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"UserAPIKeyAuth(api_key={self.api_key!r}, user_role={self.user_role!r})"


# how clients send a key, in the order the reference looks: Authorization first (the openai
# SDK), then ``api-key`` (Azure clients), then ``x-api-key`` (the anthropic SDK)
_KEY_HEADERS = ("api-key", "x-api-key")
KEY_FORMS = "it as 'Authorization: Bearer <key>', or in an 'api-key' or 'x-api-key' header"


def presented_key(headers: Any) -> tuple[str | None, str | None]:
    """The key a request carries, and a problem with how it was sent (or None).

    ``Authorization: Bearer <key>`` (any case), a bare ``Authorization: <key>`` (``sk-…``),
    else ``api-key`` or ``x-api-key``. An Authorization header in another scheme (``Basic …``)
    is a problem, not a key: it is never taken for one, and never looked past.
    """
    header = headers.get("authorization")
    if header is not None and header.strip():
        value = header.strip()
        scheme, space, token = value.partition(" ")
        if scheme.lower() == "bearer":
            token = token.strip()
            return (
                (token, None)
                if token
                else (None, f"the Authorization header has no key after 'Bearer': send {KEY_FORMS}")
            )
        if not space:
            return value, None
        # the value is not echoed: it may be a key with a typo in it
        return None, f"the Authorization header is neither 'Bearer <key>' nor a bare key: send {KEY_FORMS}"
    for name in _KEY_HEADERS:
        value = headers.get(name)
        if value is not None and value.strip():
            return value.strip(), None
    return None, None


def unauthorized(message: str) -> ProxyError:
    """The 401 every backend refuses a key with (the OpenAI shape the SDKs recognise)."""
    return ProxyError(401, message, type="authentication_error", code="invalid_api_key")


class KeyBackend(Protocol):
    """Turns the key a request presented into the caller's identity.

    ``key`` is None when the request carried none (or sent its Authorization header in a form
    that holds no key: the middleware then answers with what was wrong with the header). Raise
    ``unauthorized(...)`` to refuse. Called once per authenticated request, on the event loop:
    a backend that reads a store awaits it, and keeps its own cache.
    """

    async def authenticate(self, key: str | None, conn: HTTPConnection) -> UserAPIKeyAuth: ...


class MasterKeyBackend:
    """``general_settings.master_key``: one key, compared in constant time, for an admin.

    Without a master key every request is let in (keyless mode, loopback by default); a key
    it carries is still hashed onto the identity, so logs can tell callers apart.
    """

    def __init__(self, master_key: str | None) -> None:
        self._master = master_key.encode() if master_key else None
        self._master_user = (
            UserAPIKeyAuth(hash_key(master_key), user_role="proxy_admin") if master_key else None
        )
        self._hashes: dict[str, str | None] = {}
        self._keyless: dict[str | None, UserAPIKeyAuth] = {}

    async def authenticate(self, key: str | None, conn: HTTPConnection) -> UserAPIKeyAuth:
        if self._master is None:
            # one identity per key, shared by its requests as the master key's is (a request
            # that changes it works on a copy: for_request, for_hooks)
            user = self._keyless.get(key)
            if user is None:
                if len(self._keyless) > 1024:  # bounded: callers without a master key may send anything
                    self._keyless.clear()
                user = self._keyless[key] = UserAPIKeyAuth(self._hash(key))
            return user
        if key is None:
            raise unauthorized(f"missing API key: send {KEY_FORMS}")
        if not hmac.compare_digest(key.encode(), self._master):
            raise unauthorized("invalid API key")
        assert self._master_user is not None
        return self._master_user

    def _hash(self, key: str | None) -> str | None:
        if key is None:
            return None
        digest = self._hashes.get(key)
        if digest is None:
            if len(self._hashes) > 1024:  # bounded: callers without a master key may send anything
                self._hashes.clear()
            digest = self._hashes[key] = hash_key(key)
        return digest


def may_use(user: UserAPIKeyAuth, model: str) -> bool:
    """Whether the key's ``models`` and its team's allow ``model`` (empty lists allow all)."""
    return (not user.models or model in user.models) and (not user.team_models or model in user.team_models)


def check_model(user: UserAPIKeyAuth, model: str) -> None:
    """Refuse (401, the reference's ``key_model_access_denied`` / ``team_model_access_denied``)
    a model outside the key's or its team's ``models``; empty lists allow every model."""
    if user.models and model not in user.models:
        raise ProxyError(
            401,
            f"key not allowed to access model. This key can only access models={sorted(user.models)}. "
            f"Tried to access {model}",
            type="key_model_access_denied",
            param="model",
            code="401",
        )
    if user.team_models and model not in user.team_models:
        raise ProxyError(
            401,
            f"team not allowed to access model. Team={user.team_id}, can only access "
            f"models={sorted(user.team_models)}. Tried to access {model}",
            type="team_model_access_denied",
            param="model",
            code="401",
        )


__all__ = [
    "KEY_FORMS",
    "KeyBackend",
    "MasterKeyBackend",
    "UserAPIKeyAuth",
    "check_model",
    "hash_key",
    "may_use",
    "presented_key",
    "unauthorized",
]
