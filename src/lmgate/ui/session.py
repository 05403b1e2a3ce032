"""The dashboard's login cookie: who is logged in, signed, never the key itself.

The cookie holds ``{"admin": bool, "key_hash": <SHA-256 of a virtual key> | None, "label": …}``
signed with itsdangerous (HMAC-SHA256 with a timestamp, refused after ``MAX_AGE_S``). The
signing secret is derived from the master key, so every instance behind one master key
accepts the same cookie and a new master key logs everyone out; without a master key it is
random per process. The cookie is HttpOnly (scripts cannot read it), SameSite=Strict (another
site cannot send it: the login and logout forms need no CSRF token) and Secure behind HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from .query import Viewer

COOKIE = "lmgate_ui"
MAX_AGE_S = 12 * 3600
_SALT = "lmgate-ui-session"


class Sessions:
    """Makes and reads the login cookie's value."""

    def __init__(self, master_key: str | None) -> None:
        secret = (
            hmac.new(master_key.encode(), b"lmgate dashboard session v1", hashlib.sha256).hexdigest()
            if master_key
            else secrets.token_hex(32)
        )
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)

    def dump(self, viewer: Viewer) -> str:
        return self._serializer.dumps(
            {"admin": viewer.admin, "key_hash": viewer.key_hash, "label": viewer.label}
        )

    def load(self, value: str | None) -> Viewer | None:
        """The viewer a cookie stands for; None when absent, tampered with or expired."""
        if not value:
            return None
        try:
            data: Any = self._serializer.loads(value, max_age=MAX_AGE_S)
        except BadSignature:  # includes SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        admin = data.get("admin") is True
        key_hash = data.get("key_hash")
        if not admin and not isinstance(key_hash, str):
            return None
        return Viewer(admin=admin, key_hash=None if admin else key_hash, label=str(data.get("label") or ""))


def cookie_options(secure: bool) -> dict[str, Any]:
    """How the cookie is set (Starlette's ``set_cookie`` arguments)."""
    return {
        "max_age": MAX_AGE_S,
        "path": "/ui",
        "httponly": True,
        "samesite": "strict",
        "secure": secure,
    }


__all__ = ["COOKIE", "MAX_AGE_S", "Sessions", "cookie_options"]
