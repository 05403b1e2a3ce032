"""Provider resolution: a model string becomes (provider, model name).

``openai/…``, ``azure/<deployment>``, ``anthropic/…``, ``gemini/…``, ``bedrock/…``, ``vertex_ai/…`` and the
OpenAI-compatible clouds of ``compatible.CLOUDS`` (``groq/…``, ``deepseek/…``, ``hosted_vllm/…``, …) select a
provider by prefix; bare OpenAI names (``gpt-*``, ``o1*``, ``o3*``, ``o4*``,
``text-embedding-*``, …) and Anthropic names (``claude-*``) are recognised; any other name
with an ``api_base`` goes to an OpenAI-compatible server.
"""

from __future__ import annotations

from .. import exceptions as exc
from .anthropic import AnthropicProvider
from .azure import AzureProvider
from .base import Endpoint, HttpRequest, Provider, StreamTranslator
from .bedrock import BedrockProvider
from .compatible import COMPATIBLE_PROVIDERS
from .gemini import GeminiProvider
from .openai import OpenAIProvider
from .vertex import VERTEX_GEMINI

PROVIDERS: dict[str, Provider] = {
    "openai": OpenAIProvider(),
    "azure": AzureProvider(),
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
    "bedrock": BedrockProvider(),
    "vertex_ai": VERTEX_GEMINI,  # Gemini; for_model() hands claude-* to Claude on Vertex
    **COMPATIBLE_PROVIDERS,
}

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


def resolve(model: str, custom_llm_provider: str | None = None, api_base: str | None = None) -> tuple[Provider, str]:
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
