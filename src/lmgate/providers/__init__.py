"""Provider resolution: a model string becomes (provider, model name).

``openai/…``, ``azure/<deployment>``, ``anthropic/…``, ``gemini/…``, ``bedrock/…``, ``vertex_ai/…`` and the
OpenAI-compatible clouds of ``compatible.CLOUDS`` (``groq/…``, ``deepseek/…``, ``hosted_vllm/…``, …) select a
provider by prefix; bare OpenAI names (``gpt-*``, ``o1*``, ``o3*``, ``o4*``,
``text-embedding-*``, …) and Anthropic names (``claude-*``) are recognised; any other name
with an ``api_base`` goes to an OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module

from .. import exceptions as exc
from .base import Endpoint, HttpRequest, Provider, StreamTranslator

# where each prefix's provider lives: its module is imported the first time a model names it, so
# a call to one provider does not import (and keep in memory) the others' translation, signing
# and credential code (Bedrock's botocore/hmac, Vertex's google-auth seam, ...)
_BUILT_IN: dict[str, tuple[str, str]] = {
    "openai": (".openai", "OpenAIProvider"),
    "azure": (".azure", "AzureProvider"),
    "anthropic": (".anthropic", "AnthropicProvider"),
    "gemini": (".gemini", "GeminiProvider"),
    "bedrock": (".bedrock", "BedrockProvider"),
    "vertex_ai": (".vertex", "VERTEX_GEMINI"),  # Gemini; for_model() hands claude-* to Claude on Vertex
}


class _Providers(Mapping[str, Provider]):
    """Every provider by prefix, each made on first use: the built-in ones of ``_BUILT_IN`` and
    the OpenAI-compatible clouds of ``compatible.CLOUDS`` (one module, loaded when a name outside
    the built-in ones is asked for, or when the whole mapping is listed)."""

    def __init__(self) -> None:
        self._made: dict[str, Provider] = {}
        self._compatible: dict[str, Provider] | None = None

    def _clouds(self) -> dict[str, Provider]:
        if self._compatible is None:
            from .compatible import COMPATIBLE_PROVIDERS

            self._compatible = dict(COMPATIBLE_PROVIDERS)
        return self._compatible

    def __getitem__(self, prefix: str) -> Provider:
        provider = self._made.get(prefix)
        if provider is not None:
            return provider
        where = _BUILT_IN.get(prefix)
        if where is None:
            return self._clouds()[prefix]
        module, name = where
        made = getattr(import_module(module, __name__), name)
        provider = made() if isinstance(made, type) else made
        self._made[prefix] = provider
        return provider

    def __contains__(self, prefix: object) -> bool:
        return prefix in _BUILT_IN or prefix in self._clouds()

    def __iter__(self) -> Iterator[str]:
        yield from _BUILT_IN
        yield from self._clouds()

    def __len__(self) -> int:
        return len(_BUILT_IN) + len(self._clouds())


PROVIDERS: Mapping[str, Provider] = _Providers()

_OPENAI_PREFIXES = (
    "gpt-",
    "o1",
    "o3",
    "o4",
    "chatgpt-",
    "text-embedding-",
    "davinci",
    "babbage",
    "omni-moderation",
    "codex-",
)


def resolve(
    model: str, custom_llm_provider: str | None = None, api_base: str | None = None
) -> tuple[Provider, str]:
    """The provider and the provider-side model name for ``model``."""
    if not model or not isinstance(model, str):
        raise exc.UnknownModelError(f"model must be a non-empty string, got {model!r}")
    if custom_llm_provider:
        provider = PROVIDERS.get(custom_llm_provider)
        if provider is None:
            raise exc.UnknownModelError(_unsupported(custom_llm_provider + "/" + model), model=model)
        prefix = custom_llm_provider + "/"
        name = model[len(prefix) :] if model.startswith(prefix) else model
        return provider.for_model(name), name
    prefix, sep, rest = model.partition("/")
    if sep and prefix in PROVIDERS:
        if not rest:
            raise exc.UnknownModelError(f"model {model!r} names a provider but no model", prefix, model)
        return PROVIDERS[prefix].for_model(rest), rest
    if model.startswith(_OPENAI_PREFIXES):
        return PROVIDERS["openai"], model
    if model.startswith("claude"):
        return PROVIDERS["anthropic"], model
    if api_base:
        return PROVIDERS["openai"], model
    raise exc.UnknownModelError(_unsupported(model), model=model)


def _unsupported(model: str) -> str:
    prefixes = ", ".join(f"{p}/…" for p in PROVIDERS)
    return (
        f"no provider for model {model!r}. Supported: the prefixes {prefixes}; bare OpenAI names "
        "(gpt-*, o1*, o3*, o4*, text-embedding-*); bare Anthropic names (claude-*); any model with "
        "api_base= (an OpenAI-compatible server); or mock_response= on any model"
    )


__all__ = ["Endpoint", "HttpRequest", "Provider", "StreamTranslator", "PROVIDERS", "resolve"]
