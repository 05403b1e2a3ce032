"""Azure OpenAI: the OpenAI wire format under deployment URLs, an ``api-key`` header and ``api-version``."""

from __future__ import annotations

from typing import ClassVar

from .base import Endpoint
from .openai import OpenAIProvider

DEFAULT_AZURE_API_VERSION = "2024-10-21"


class AzureProvider(OpenAIProvider):
    name: ClassVar[str] = "azure"
    key_env: tuple[str, ...] = ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY")
    base_env: tuple[str, ...] = ("AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT")
    version_env: tuple[str, ...] = ("AZURE_API_VERSION", "OPENAI_API_VERSION")
    default_api_base: ClassVar[str | None] = None
    default_api_version: ClassVar[str | None] = DEFAULT_AZURE_API_VERSION
    key_optional_with_api_base: ClassVar[bool] = False
    passthrough_apis: ClassVar[tuple[str, ...]] = ()  # deployment URLs: bridged over chat instead

    def headers(self, ep: Endpoint) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if ep.api_key:
            headers["api-key"] = ep.api_key
        return headers

    def chat_url(self, ep: Endpoint) -> str:
        return f"{ep.api_base}/openai/deployments/{ep.model}/chat/completions"

    def embeddings_url(self, ep: Endpoint) -> str:
        return f"{ep.api_base}/openai/deployments/{ep.model}/embeddings"

    def query(self, ep: Endpoint) -> dict[str, str]:
        return {"api-version": ep.api_version or DEFAULT_AZURE_API_VERSION}
