"""Vertex AI (``vertex_ai/<model>``): Gemini models and Anthropic's Claude models on Google Cloud.

Gemini models speak the same ``GenerateContentRequest`` / ``GenerateContentResponse`` as Google
AI Studio (the translation is ``gemini.py``'s) at
``{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent``
(``:streamGenerateContent?alt=sse`` when streamed). Text-embedding models
(``text-embedding-005``, ``gemini-embedding-001``, …) embed through ``:predict`` with
``{"instances": [{"content": …}], "parameters": {"outputDimensionality": …}}``.

Claude models (``claude-*``) take Anthropic's Messages body (``anthropic.py``'s translation)
at ``publishers/anthropic/models/{model}:rawPredict`` (``:streamRawPredict`` when streamed),
with ``anthropic_version: "vertex-2023-10-16"`` in the body and no ``model`` field; answers and
stream events are Anthropic's own.

The base is ``https://{location}-aiplatform.googleapis.com`` (``https://aiplatform.googleapis.com``
for the ``global`` location) unless ``api_base`` names another (a host, to which the project's
path is added; a path holding ``/projects/…``, used as it is; or, as the reference takes it, a
model's whole path ending ``/models/{model}``, to which only ``:{method}`` is added); every request carries
``Authorization: Bearer <OAuth token>`` from ``_google_auth`` (``vertex_credentials``: a
service account's JSON or a path to one; unset: ``google.auth.default()``). Project and
location come from ``vertex_project`` / ``vertex_location``, else ``VERTEXAI_PROJECT`` /
``VERTEXAI_LOCATION``, else the credentials' project and ``us-central1``, as the reference
reads them.

Errors are Google's ``{"error": {"code", "message", "status"}}`` (or, from a Claude model,
Anthropic's ``{"type": "error", "error": {"type", "message"}}``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, ClassVar

from .. import exceptions as exc
from ..types import EmbeddingResponse
from .anthropic import AnthropicProvider
from .base import Endpoint, HttpRequest, Provider, TokenSource
from .gemini import GeminiProvider

NAME = "vertex_ai"
DEFAULT_LOCATION = "us-central1"
#: the Messages API version Claude on Vertex AI takes, in the body
ANTHROPIC_VERTEX_VERSION = "vertex-2023-10-16"
_OPTION_NAMES = {
    "project": ("vertex_project", "vertex_ai_project"),
    "location": ("vertex_location", "vertex_ai_location"),
    "credentials": ("vertex_credentials", "vertex_ai_credentials"),
}
_ENV_NAMES = {
    "project": ("VERTEXAI_PROJECT", "VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT"),
    "location": ("VERTEXAI_LOCATION", "VERTEX_LOCATION", "GOOGLE_CLOUD_LOCATION"),
    "credentials": ("VERTEXAI_CREDENTIALS", "VERTEX_CREDENTIALS"),
}
# project ids (and domain-scoped ones, ``example.com:proj``) and region names: nothing that changes the URL
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]*$")
_LOCATION = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _option(options: dict[str, Any], what: str) -> Any:
    for name in _OPTION_NAMES[what]:
        if options.get(name) not in (None, ""):
            return options[name]
    for name in _ENV_NAMES[what]:
        if os.environ.get(name):
            return os.environ[name]
    return None


def default_api_base(location: str) -> str:
    return (
        "https://aiplatform.googleapis.com"
        if location == "global"
        else f"https://{location}-aiplatform.googleapis.com"
    )


class _OnVertex:
    """What both Vertex AI providers share: where the call goes and whose token it carries."""

    name: ClassVar[str] = NAME
    requires_key: ClassVar[bool] = False
    publisher: ClassVar[str] = "google"

    def endpoint(
        self, model: str, api_base: str | None, api_key: str | None, api_version: str | None
    ) -> Endpoint:
        if api_key:
            raise exc.BadRequestError(
                "vertex_ai authenticates with Google credentials, not an api_key: pass vertex_credentials= "
                "(a service account's JSON or a path to one) or leave it unset for the environment's default "
                "credentials (GOOGLE_APPLICATION_CREDENTIALS)",
                NAME,
                model,
            )
        base, _, query = (api_base or "").partition("?")
        return Endpoint(NAME, model, base.rstrip("/"), None, api_version, query.partition("#")[0])

    def credentials(self, ep: Endpoint, options: dict[str, Any]) -> tuple[Endpoint, TokenSource | None]:
        from . import _google_auth

        source = _google_auth.token_source(_option(options, "credentials"))
        location = str(_option(options, "location") or DEFAULT_LOCATION)
        if not _LOCATION.match(location):
            raise exc.BadRequestError(
                f"vertex_location {location!r} is not a Vertex AI location (e.g. us-central1, europe-west4, global)",
                NAME,
                ep.model,
            )
        project = _option(options, "project") or source.project_id()
        if not project:
            raise exc.BadRequestError(
                f"no Google Cloud project for vertex_ai/{ep.model}: pass vertex_project= or set VERTEXAI_PROJECT "
                "(or use credentials that name one)",
                NAME,
                ep.model,
            )
        if not _PROJECT.match(str(project)):
            raise exc.BadRequestError(f"vertex_project {project!r} is not a project id", NAME, ep.model)
        base = ep.api_base or default_api_base(location)
        if "/projects/" not in base:  # a host (with or without /v1): the project's resource path is added
            base = base[: -len("/v1")] if base.endswith("/v1") else base
            base = f"{base}/v1/projects/{project}/locations/{location}"
        return dataclasses.replace(ep, api_base=base), source

    def _model_url(self, ep: Endpoint, method: str) -> str:
        if "/models/" in ep.api_base:  # the reference's form: api_base is the model's whole path
            return f"{ep.api_base}:{method}"
        return f"{ep.api_base}/publishers/{self.publisher}/models/{ep.model}:{method}"


class VertexGeminiProvider(_OnVertex, GeminiProvider):  # type: ignore[misc]
    """Gemini (and Google's embedding models) on Vertex AI."""

    name: ClassVar[str] = NAME
    key_env: tuple[str, ...] = ()
    base_env: tuple[str, ...] = ()
    default_api_base: ClassVar[str | None] = None

    def for_model(self, model: str) -> Provider:
        return VERTEX_ANTHROPIC if model.startswith("claude") else self

    def _url(self, ep: Endpoint, method: str) -> str:
        return self._model_url(ep, method)

    def _headers(self, ep: Endpoint) -> dict[str, str]:
        return {"Content-Type": "application/json"}  # the bearer token is added by the attempt loop

    # -- embeddings: :predict --
    def embedding_request(self, ep: Endpoint, input: list[Any], params: dict[str, Any]) -> HttpRequest:
        unknown = sorted(
            set(params) - {"dimensions", "task_type", "title", "auto_truncate", "encoding_format", "user"}
        )
        if unknown:
            raise exc.UnsupportedParamsError(
                f"vertex_ai embeddings do not support the parameter(s) {', '.join(unknown)}", NAME, ep.model
            )
        instances: list[dict[str, Any]] = []
        for item in input:
            if not isinstance(item, str):
                raise exc.BadRequestError(
                    "vertex_ai embeddings take strings, not token lists", NAME, ep.model
                )
            instance: dict[str, Any] = {"content": item}
            if params.get("task_type") is not None:
                instance["task_type"] = params["task_type"]
            if params.get("title") is not None:
                instance["title"] = params["title"]
            instances.append(instance)
        body: dict[str, Any] = {"instances": instances}
        parameters: dict[str, Any] = {}
        if params.get("dimensions") is not None:
            parameters["outputDimensionality"] = params["dimensions"]
        if params.get("auto_truncate") is not None:
            parameters["autoTruncate"] = params["auto_truncate"]
        if parameters:
            body["parameters"] = parameters
        return HttpRequest("POST", self._url(ep, "predict"), self._headers(ep), body)

    def parse_embedding(self, body: dict[str, Any], ep: Endpoint) -> EmbeddingResponse:
        data = []
        tokens = 0
        for i, prediction in enumerate(body.get("predictions") or []):
            embeddings = prediction.get("embeddings") or {}
            tokens += int((embeddings.get("statistics") or {}).get("token_count") or 0)
            data.append({"object": "embedding", "index": i, "embedding": embeddings.get("values") or []})
        out: dict[str, Any] = {
            "object": "list",
            "data": data,
            "model": ep.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return EmbeddingResponse(out)


class VertexAnthropicProvider(_OnVertex, AnthropicProvider):  # type: ignore[misc]
    """Claude on Vertex AI: Anthropic's Messages API behind ``rawPredict`` / ``streamRawPredict``."""

    name: ClassVar[str] = NAME
    key_env: tuple[str, ...] = ()
    base_env: tuple[str, ...] = ()
    default_api_base: ClassVar[str | None] = None
    publisher: ClassVar[str] = "anthropic"

    def for_model(self, model: str) -> Provider:
        return self if model.startswith("claude") else VERTEX_GEMINI

    def chat_request(
        self, ep: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
    ) -> HttpRequest:
        req = super().chat_request(ep, messages, params, stream)
        body = {"anthropic_version": ANTHROPIC_VERTEX_VERSION}
        body.update((k, v) for k, v in req.json.items() if k != "model")  # the model is in the URL
        method = "streamRawPredict" if stream else "rawPredict"
        return HttpRequest("POST", self._model_url(ep, method), {"Content-Type": "application/json"}, body)

    def error_message(self, body: Any) -> tuple[str, str | None]:
        """Google's error shape (auth, quota, routing) or Anthropic's (the model's own refusals)."""
        if isinstance(body, list) and body and isinstance(body[0], dict):
            body = body[0]
        if isinstance(body, dict) and isinstance(body.get("error"), dict) and "status" in body["error"]:
            err = body["error"]
            return str(err.get("message") or ""), err.get("status")
        return super().error_message(body)


VERTEX_GEMINI = VertexGeminiProvider()
VERTEX_ANTHROPIC = VertexAnthropicProvider()
