"""OpenAI-compatible clouds and local servers, chosen by model prefix: one table, one class.

Each row names a prefix's default base URL and the environment variables read for its key
and base, as the reference implementation reads them (LiteLLM's
``get_llm_provider_logic._get_openai_compatible_provider_info`` and the
``litellm/llms/<vendor>/chat/transformation.py`` configs), plus the few request differences
that matter: parameters a vendor refuses (an ``UnsupportedParamsError`` naming them, or
dropped with ``drop_params``), vendors that answer only one choice (``n`` > 1 refused), and
parameters a vendor spells differently (Mistral's ``random_seed``).

Answers are OpenAI's shape with two vendor habits smoothed, streamed and not:

* reasoning text — ``reasoning_content`` (DeepSeek, xAI, Together, Fireworks, vLLM …) passes
  through; ``reasoning`` (OpenRouter, Groq's ``reasoning_format="parsed"``, Ollama) is copied
  to ``reasoning_content``;
* usage — DeepSeek's ``prompt_cache_hit_tokens`` becomes ``prompt_tokens_details.cached_tokens``;
  xAI's ``reasoning_tokens`` counted apart from ``completion_tokens`` are folded in (OpenAI
  counts them inside), so cached and reasoning tokens are priced at their own rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..types import ModelResponse, ModelResponseStream
from ..types.decoded import chat_completion
from .base import Endpoint, HttpRequest, StreamTranslator
from .openai import OpenAIProvider, _OpenAIStream


@dataclass(frozen=True)
class Cloud:
    """One row of the table."""

    prefix: str
    api_base: str | None  # None: the caller must name one (a self-hosted server)
    key_env: tuple[str, ...]
    base_env: tuple[str, ...]
    requires_key: bool = True
    #: OpenAI parameters the vendor's API refuses
    unsupported: frozenset[str] = frozenset()
    #: the API answers one choice only: ``n`` > 1 is refused
    single_choice: bool = False
    #: OpenAI parameter name -> the vendor's name for it
    renames: tuple[tuple[str, str], ...] = ()
    #: the API rejects an assistant message that carries ``reasoning_content`` back
    strip_reasoning_in_history: bool = False
    #: body fields sent unless the caller sets them
    body_defaults: tuple[tuple[str, Any], ...] = ()
    docs: str = ""


_NO_LOGPROBS = frozenset({"logprobs", "top_logprobs"})

CLOUDS: tuple[Cloud, ...] = (
    Cloud(
        "mistral",
        "https://api.mistral.ai/v1",
        ("MISTRAL_API_KEY",),
        ("MISTRAL_API_BASE",),
        unsupported=_NO_LOGPROBS | {"logit_bias", "user", "function_call", "functions"},
        renames=(("seed", "random_seed"),),
        docs="https://docs.mistral.ai/api/",
    ),
    Cloud(
        "groq",
        "https://api.groq.com/openai/v1",
        ("GROQ_API_KEY",),
        ("GROQ_API_BASE",),
        unsupported=_NO_LOGPROBS | {"logit_bias"},
        single_choice=True,
        docs="https://console.groq.com/docs/openai",
    ),
    Cloud(
        "xai",
        "https://api.x.ai/v1",
        ("XAI_API_KEY",),
        ("XAI_API_BASE",),
        docs="https://docs.x.ai/docs/api-reference",
    ),
    Cloud(
        "deepseek",
        "https://api.deepseek.com/beta",
        ("DEEPSEEK_API_KEY",),
        ("DEEPSEEK_API_BASE",),
        strip_reasoning_in_history=True,
        docs="https://api-docs.deepseek.com/",
    ),
    Cloud(
        "together_ai",
        "https://api.together.xyz/v1",
        ("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"),
        ("TOGETHER_AI_API_BASE",),
        docs="https://docs.together.ai/docs/openai-api-compatibility",
    ),
    Cloud(
        "fireworks_ai",
        "https://api.fireworks.ai/inference/v1",
        ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
        ("FIREWORKS_API_BASE",),
        docs="https://docs.fireworks.ai/tools-sdks/openai-compatibility",
    ),
    Cloud(
        "openrouter",
        "https://openrouter.ai/api/v1",
        ("OPENROUTER_API_KEY", "OR_API_KEY"),
        ("OPENROUTER_API_BASE", "OR_API_BASE"),
        # usage accounting: the answer's usage then carries the exact cost charged (usage.cost)
        body_defaults=(("usage", {"include": True}),),
        docs="https://openrouter.ai/docs/api-reference/overview",
    ),
    Cloud(
        "perplexity",
        "https://api.perplexity.ai",
        ("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"),
        ("PERPLEXITY_API_BASE",),
        # the chat completions reference lists no tools, no n, no logprobs, no seed
        unsupported=_NO_LOGPROBS
        | {
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "functions",
            "function_call",
            "logit_bias",
            "seed",
        },
        single_choice=True,
        docs="https://docs.perplexity.ai/api-reference/chat-completions",
    ),
    Cloud(
        "cerebras",
        "https://api.cerebras.ai/v1",
        ("CEREBRAS_API_KEY",),
        ("CEREBRAS_API_BASE",),
        docs="https://inference-docs.cerebras.ai/api-reference/chat-completions",
    ),
    Cloud(
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        ("DEEPINFRA_API_KEY",),
        ("DEEPINFRA_API_BASE",),
        docs="https://deepinfra.com/docs/openai_api",
    ),
    Cloud(
        "nvidia_nim",
        "https://integrate.api.nvidia.com/v1",
        ("NVIDIA_NIM_API_KEY",),
        ("NVIDIA_NIM_API_BASE",),
        docs="https://docs.api.nvidia.com/nim/reference/llm-apis",
    ),
    # Ollama's OpenAI-compatible endpoint (/v1/chat/completions), not its native /api/chat
    Cloud(
        "ollama_chat",
        "http://localhost:11434/v1",
        ("OLLAMA_API_KEY",),
        ("OLLAMA_API_BASE",),
        requires_key=False,
        docs="https://github.com/ollama/ollama/blob/main/docs/openai.md",
    ),
    Cloud(
        "lm_studio",
        "http://localhost:1234/v1",
        ("LM_STUDIO_API_KEY",),
        ("LM_STUDIO_API_BASE",),
        requires_key=False,
        docs="https://lmstudio.ai/docs/app/api/endpoints/openai",
    ),
    Cloud(
        "hosted_vllm",
        None,
        ("HOSTED_VLLM_API_KEY",),
        ("HOSTED_VLLM_API_BASE",),
        requires_key=False,
        docs="https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
    ),
)


class CompatibleProvider(OpenAIProvider):
    """OpenAI's wire format at a cloud's base URL, with the row's differences applied."""

    #: non-None so the pipeline asks ``check_params``; what a vendor refuses is in its row
    supported_params: ClassVar[frozenset[str] | None] = frozenset()
    # each cloud's other APIs differ: /v1/responses and /v1/completions are bridged over chat
    passthrough_apis: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.name = cloud.prefix  # type: ignore[misc]  # one instance per row
        self.key_env = cloud.key_env
        self.base_env = cloud.base_env
        self.default_api_base = cloud.api_base  # type: ignore[misc]
        self.requires_key = cloud.requires_key  # type: ignore[misc]

    def check_params(self, params: dict[str, Any]) -> list[str]:
        """The parameters this vendor refuses (``n`` > 1 where it answers one choice)."""
        bad = [k for k in params if k in self.cloud.unsupported]
        if self.cloud.single_choice and params.get("n") not in (None, 1) and "n" not in bad:
            bad.append("n")
        return bad

    def chat_request(
        self, ep: Endpoint, messages: list[dict[str, Any]], params: dict[str, Any], stream: bool
    ) -> HttpRequest:
        for ours, theirs in self.cloud.renames:
            if ours in params:
                params[theirs] = params.pop(ours)
        for name, value in self.cloud.body_defaults:
            params.setdefault(name, value)
        if self.cloud.strip_reasoning_in_history:
            messages = [_without_reasoning(m) for m in messages]
        return super().chat_request(ep, messages, params, stream)

    def parse_chat(self, body: dict[str, Any], ep: Endpoint) -> ModelResponse:
        for choice in body.get("choices") or ():
            _reasoning_as_content(choice.get("message"))
        _normalise_usage(body.get("usage"))
        return chat_completion(body)

    def stream_translator(self, ep: Endpoint) -> StreamTranslator:
        return _CompatibleStream(self, ep)


class _CompatibleStream(_OpenAIStream):
    def feed(self, event: str, data: str) -> list[ModelResponseStream]:
        chunks = super().feed(event, data)
        for chunk in chunks:
            for choice in chunk.get("choices") or ():
                _reasoning_as_content(choice.get("delta"))
            _normalise_usage(chunk.get("usage"))
        return chunks


def _without_reasoning(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("role") == "assistant" and "reasoning_content" in message:
        return {k: v for k, v in message.items() if k != "reasoning_content"}
    return message


def _reasoning_as_content(message: Any) -> None:
    """``reasoning`` (OpenRouter, Groq, Ollama) → ``reasoning_content``, the name the reference uses."""
    if isinstance(message, dict) and message.get("reasoning") and not message.get("reasoning_content"):
        reasoning = message["reasoning"]
        if isinstance(reasoning, str):
            message["reasoning_content"] = reasoning


def _normalise_usage(usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    # DeepSeek reports cache hits beside prompt_tokens (which include them)
    hit = usage.get("prompt_cache_hit_tokens")
    details = usage.get("prompt_tokens_details")
    if hit and not (isinstance(details, dict) and details.get("cached_tokens")):
        usage["prompt_tokens_details"] = {
            **(details if isinstance(details, dict) else {}),
            "cached_tokens": int(hit),
        }
    # xAI counts reasoning tokens apart from completion_tokens but inside total_tokens: fold them
    # in, as OpenAI counts them, only when the totals prove they are apart (never twice)
    reasoning = int(((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
    if reasoning:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        if int(usage.get("total_tokens") or 0) == prompt + completion + reasoning:
            usage["completion_tokens"] = completion + reasoning


COMPATIBLE_PROVIDERS: dict[str, CompatibleProvider] = {c.prefix: CompatibleProvider(c) for c in CLOUDS}
