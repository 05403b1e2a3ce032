"""A fake Vertex AI: a real HTTP/1.1 server on 127.0.0.1 with its own OAuth token endpoint.

Written from the Vertex AI REST reference, google-auth's sources and Anthropic's Vertex client:

* https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest-rpc and
  https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.publishers.models —
  ``POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent``,
  ``:streamGenerateContent`` (``?alt=sse``) and ``:predict``; the Gemini request and response bodies
  are AI Studio's (served here by ``fakes.gemini.FakeGemini``'s logic); text embeddings
  (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api):
  ``{"instances": [{"content", "task_type"?, "title"?}], "parameters": {"outputDimensionality"?,
  "autoTruncate"?}}`` → ``{"predictions": [{"embeddings": {"values", "statistics": {"token_count",
  "truncated"}}}], "metadata": {"billableCharacterCount"}}``;
* Claude on Vertex AI (https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude,
  anthropics/anthropic-sdk-python ``src/anthropic/lib/vertex/_client.py``):
  ``publishers/anthropic/models/{model}:rawPredict`` / ``:streamRawPredict``, the Messages body with
  ``"anthropic_version": "vertex-2023-10-16"`` and without ``model`` (it is in the path); answers and
  SSE events are Anthropic's (served by ``fakes.provider.FakeProvider``'s Anthropic mode);
* errors: Google's ``{"error": {"code", "message", "status"}}``; a missing, unknown or expired bearer
  token is ``401 UNAUTHENTICATED`` "Request had invalid authentication credentials…";
* the token endpoint (googleapis/google-auth-library-python ``google/oauth2/service_account.py``
  ``Credentials._make_authorization_grant_assertion`` and ``refresh``, ``google/oauth2/_client.py``
  ``jwt_grant``; RFC 7523): a form POST ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&
  assertion=<JWT>`` to the service account's ``token_uri``; the JWT is RS256-signed by the account's
  private key (header ``kid`` = ``private_key_id``) with claims ``iss`` (client_email), ``scope``,
  ``aud`` (always ``https://oauth2.googleapis.com/token``, whatever the token_uri), ``iat``, ``exp``; the answer is ``{"access_token", "expires_in", "token_type":
  "Bearer"}``. This fake verifies the signature with the public key registered for ``iss``.

Time is the fake's own ``clock`` (a test moves it forward to expire tokens, no sleeping).
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .gemini import FakeGemini
from .provider import BackgroundHTTPServer, BaseHandler, FakeProvider, RecordedRequest, fake_embedding

__all__ = ["FakeVertex", "make_service_account", "TOKEN_PATH"]

TOKEN_PATH = "/token"
#: the audience google-auth's assertion names whatever the token_uri (service_account._GOOGLE_OAUTH2_TOKEN_ENDPOINT)
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"


def make_service_account(
    token_uri: str, project: str = "test-project", email: str | None = None
) -> tuple[dict[str, Any], Any]:
    """(service account JSON as a dict, its RSA public key): a fresh 2048-bit key, PKCS#8 PEM like Google's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    email = email or f"lmgate-test@{project}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return info, key.public_key()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class _Handler(BaseHandler):
    def dispatch(self) -> None:
        body = self.read_body()
        url = urlsplit(self.path)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = ...
        rec = RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=self.header_dict(),
            json=None if parsed is ... else parsed,
            raw=body,
        )
        self.server.owner._handle(self, rec, parsed is not ...)


class FakeVertex(BackgroundHTTPServer):
    """Fake Vertex AI with a token endpoint. ``register(info, public_key)`` admits a service account.

    Attributes a test may set: ``expires_in`` (seconds a new token lives), ``clock`` (the fake's
    now, in seconds), ``projects`` (the project ids that exist; None = any).
    """

    handler_class = _Handler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._token_requests: list[dict[str, Any]] = []
        self._tokens: dict[str, float] = {}  # token -> expiry on the fake's clock
        self._keys: dict[str, Any] = {}  # client_email -> public key
        self._ids = itertools.count(1)
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self.expires_in = 3600
        self.clock = time.time()
        self.projects: set[str] | None = None
        # a test may hold token answers until it sets ``token_gate``; ``token_arrived`` tells it one is waiting
        self.token_gate: threading.Event | None = None
        self.token_arrived = threading.Event()
        self.gate_results: list[bool] = []  # per held token request: released by the test (True) or timed out
        # the Gemini and Anthropic shapes, served by the existing fakes' logic (never started themselves)
        self.gemini = FakeGemini()
        self.anthropic = FakeProvider()

    # -- public ------------------------------------------------------------------------------------
    @property
    def token_uri(self) -> str:
        return f"{self.base_url}{TOKEN_PATH}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Vertex API requests (not token requests), oldest first."""
        with self._cond:
            return list(self._requests)

    @property
    def token_requests(self) -> list[dict[str, Any]]:
        """The verified JWT claims of every token exchange, oldest first."""
        with self._cond:
            return list(self._token_requests)

    def register(self, info: dict[str, Any], public_key: Any) -> None:
        with self._cond:
            self._keys[info["client_email"]] = public_key

    def issued(self) -> list[str]:
        with self._cond:
            return list(self._tokens)

    def enqueue_error(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        """The next model request is answered with this error body (before any scripted reply)."""
        with self._cond:
            self._queue.append({"status": status, "body": body, "headers": headers or {}})

    def reset(self) -> None:
        with self._cond:
            self._requests.clear()
            self._token_requests.clear()
            self._queue.clear()
            self.expires_in = 3600
            self.projects = None
            self.token_gate = None
            self.token_arrived.clear()
            self.gate_results.clear()
        self.gemini.reset()
        self.anthropic.reset()

    # -- errors ------------------------------------------------------------------------------------
    @staticmethod
    def error_body(status: int, message: str, rpc: str) -> dict[str, Any]:
        return {"error": {"code": status, "message": message, "status": rpc}}

    # -- handling ----------------------------------------------------------------------------------
    def _handle(self, h: BaseHandler, rec: RecordedRequest, json_ok: bool) -> None:
        if rec.path == TOKEN_PATH:
            self._token(h, rec)
            return
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()
        parts = rec.path.split("/")
        # ['', 'v1', 'projects', P, 'locations', L, 'publishers', PUB, 'models', 'M:method']
        if (
            len(parts) != 10
            or parts[1] != "v1"
            or parts[2] != "projects"
            or parts[4] != "locations"
            or parts[6] != "publishers"
            or parts[8] != "models"
            or ":" not in parts[9]
        ):
            h.send_json(
                404, self.error_body(404, f"The requested URL {rec.path} was not found.", "NOT_FOUND")
            )
            return
        project, location, publisher = parts[3], parts[5], parts[7]
        model, _, method = parts[9].rpartition(":")
        if rec.method != "POST":
            h.send_json(405, self.error_body(405, "Method not allowed.", "INVALID_ARGUMENT"))
            return
        if not self._authorized(rec.headers.get("authorization", "")):
            h.send_json(
                401,
                self.error_body(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                    "cookie or other valid authentication credential.",
                    "UNAUTHENTICATED",
                ),
            )
            return
        if self.projects is not None and project not in self.projects:
            h.send_json(
                403,
                self.error_body(
                    403,
                    f"Permission 'aiplatform.endpoints.predict' denied on resource '{project}'",
                    "PERMISSION_DENIED",
                ),
            )
            return
        with self._cond:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is not None:
            h.send_json(scripted["status"], scripted["body"], scripted["headers"])
            return
        if not json_ok or not isinstance(rec.json, dict):
            h.send_json(400, self.error_body(400, "Invalid JSON payload received.", "INVALID_ARGUMENT"))
            return
        if publisher == "google":
            self._google(h, rec, model, method, location)
        elif publisher == "anthropic":
            self._anthropic(h, rec, model, method)
        else:
            h.send_json(
                404, self.error_body(404, f"Publisher Model `{publisher}/{model}` not found.", "NOT_FOUND")
            )

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self._cond:
            expiry = self._tokens.get(token)
        return expiry is not None and self.clock < expiry

    def _google(self, h: BaseHandler, rec: RecordedRequest, model: str, method: str, location: str) -> None:
        if method == "predict":
            self._predict(h, rec.json)
            return
        if method not in ("generateContent", "streamGenerateContent"):
            h.send_json(404, self.error_body(404, f"Method {method} not found.", "NOT_FOUND"))
            return
        # the same GenerateContentRequest AI Studio takes: FakeGemini checks and answers it
        as_studio = RecordedRequest(
            rec.method,
            f"/v1/models/{model}:{method}",
            rec.query,
            {**rec.headers, "x-goog-api-key": "vertex-authorized"},
            rec.json,
            rec.raw,
        )
        self.gemini._record(as_studio)
        self.gemini._handle(h, as_studio, True)

    def _predict(self, h: BaseHandler, body: dict[str, Any]) -> None:
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            h.send_json(400, self.error_body(400, "instances must be a non-empty list", "INVALID_ARGUMENT"))
            return
        unknown = set(body) - {"instances", "parameters"}
        if unknown:
            h.send_json(
                400,
                self.error_body(
                    400,
                    f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}"',
                    "INVALID_ARGUMENT",
                ),
            )
            return
        parameters = body.get("parameters") or {}
        dims = int(parameters.get("outputDimensionality") or 4)
        predictions = []
        characters = 0
        for instance in instances:
            content = instance.get("content") if isinstance(instance, dict) else None
            if not isinstance(content, str):
                h.send_json(
                    400, self.error_body(400, "instances[].content must be a string", "INVALID_ARGUMENT")
                )
                return
            characters += len(content)
            predictions.append(
                {
                    "embeddings": {
                        "values": fake_embedding(content, dims),
                        "statistics": {"token_count": len(content.split()) or 1, "truncated": False},
                    }
                }
            )
        h.send_json(200, {"predictions": predictions, "metadata": {"billableCharacterCount": characters}})

    def _anthropic(self, h: BaseHandler, rec: RecordedRequest, model: str, method: str) -> None:
        body = rec.json
        if method not in ("rawPredict", "streamRawPredict"):
            h.send_json(404, self.error_body(404, f"Method {method} not found.", "NOT_FOUND"))
            return
        if body.get("anthropic_version") != VERTEX_ANTHROPIC_VERSION:
            h.send_json(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "anthropic_version: Field required (vertex-2023-10-16)",
                    },
                },
            )
            return
        if "model" in body:
            h.send_json(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "model: Extra inputs are not permitted",
                    },
                },
            )
            return
        if bool(body.get("stream")) != (method == "streamRawPredict"):
            h.send_json(400, self.error_body(400, f"{method} and body.stream disagree", "INVALID_ARGUMENT"))
            return
        # the Messages API itself: FakeProvider's Anthropic mode checks and answers it
        messages_body = {k: v for k, v in body.items() if k != "anthropic_version"}
        messages_body["model"] = model
        as_anthropic = RecordedRequest(
            rec.method,
            "/v1/messages",
            {},
            {**rec.headers, "anthropic-version": "2023-06-01"},
            messages_body,
            json.dumps(messages_body).encode(),
        )
        self.anthropic._record(as_anthropic)
        self.anthropic._handle(h, as_anthropic, True)

    # -- the token endpoint ------------------------------------------------------------------------
    def _token(self, h: BaseHandler, rec: RecordedRequest) -> None:
        def refuse(description: str, status: int = 400) -> None:
            h.send_json(status, {"error": "invalid_grant", "error_description": description})

        gate = self.token_gate
        if gate is not None:
            self.token_arrived.set()
            self.gate_results.append(self.wait_event(gate, 3.0))
        if rec.method != "POST" or "application/x-www-form-urlencoded" not in rec.headers.get(
            "content-type", ""
        ):
            refuse("token requests are form-encoded POSTs")
            return
        form = dict(parse_qsl(rec.raw.decode(), keep_blank_values=True))
        if form.get("grant_type") != JWT_BEARER:
            refuse(f"unsupported grant_type {form.get('grant_type')!r}")
            return
        try:
            header_b64, claims_b64, signature_b64 = form.get("assertion", "").split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(claims_b64))
            signature = _b64decode(signature_b64)
        except ValueError:
            refuse("Invalid JWT: malformed assertion")
            return
        if header.get("alg") != "RS256":
            refuse(f"Invalid JWT: alg {header.get('alg')!r}")
            return
        with self._cond:
            key = self._keys.get(claims.get("iss"))
        if key is None:
            refuse("Invalid JWT: unknown issuer (service account)")
            return
        try:
            key.verify(signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            refuse("Invalid JWT Signature.")
            return
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            refuse(f"Invalid JWT: aud {claims.get('aud')!r} is not {GOOGLE_TOKEN_AUDIENCE}")
            return
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            refuse("Invalid JWT: the cloud-platform scope is missing")
            return
        token = f"ya29.fake-{next(self._ids)}-{base64.urlsafe_b64encode(signature[:12]).decode().rstrip('=')}"
        with self._cond:
            self._token_requests.append(claims)
            self._tokens[token] = self.clock + self.expires_in
        h.send_json(200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})
