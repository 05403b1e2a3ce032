"""Which keys of a client's request body may go on to the call, and so to the provider.

A client's keys the proxy does not know go on to the provider: vendor parameters (``top_k``,
``min_p``, ``repetition_penalty``) must pass, as the reference passes "provider-specific
params". What a client may never set is what would change where the call goes, with which
credentials, what it costs or which callbacks hear of it; ``client_may_set`` says no to

* the library's control parameters (``CONTROL_PARAMS``: ``api_base``, ``api_key``,
  ``extra_headers``, ``callbacks``, ``mock_response``, the ``aws_*``/``vertex_*`` credentials, …)
  and the internal keywords the proxy passes itself, except ``metadata`` (the proxy stamps it)
  and ``timeout`` (the client's to choose);
* the reference's own configuration and routing names (``litellm_params``, ``model_list``,
  ``user_config``, ``fallbacks``, …, the ``headers`` and ``organization`` it sends as headers):
  lmgate would not act on them, but a provider must not be sent a client's credentials and URLs
  under them either;
* every name under the ``litellm_``, ``aws_`` and ``vertex_`` prefixes and every name shaped like
  a credential (``_secrets.is_secret_name``: ``…api_key``, ``…_token``, ``…secret``,
  ``password``, ``authorization``): whatever a future provider reads, no client value reaches it.

The proxy filters with it where a call's arguments are built (``routes/llm.py``) and where a
request is passed through as sent (``formats.py``, ``openai_formats.py``, ``routes/messages.py``).
"""

from __future__ import annotations

import functools
from typing import Any

from .._call import CONTROL_PARAMS
from .._secrets import is_secret_name

#: the reference's configuration and routing names a client body may carry (its client-side
#: ``user_config`` routing, request-level ``fallbacks``): never acted on here, never sent on
REFERENCE_CONFIG_NAMES = frozenset(
    {
        "litellm_params",
        "model_list",
        "user_config",
        "router_settings",
        "litellm_settings",
        "general_settings",
        "callback_settings",
        "environment_variables",
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "specific_deployment",
        "deployment_id",
        "api_type",
        "headers",
        "organization",
        "azure_ad_token_provider",
        "azure_username",
        "tenant_id",
        "client_id",
    }
)

#: the names no client may set, listed (docs/security.md names each); ``client_may_set`` also
#: refuses the prefixes and credential-shaped names below
CLIENT_BLOCKED = (
    CONTROL_PARAMS
    | REFERENCE_CONFIG_NAMES
    | {"litellm_logging_obj", "proxy_server_request", "_settings", "_call_type"}
) - {"metadata", "timeout"}
_BLOCKED_PREFIXES = ("litellm_", "aws_", "vertex_", "_")


@functools.lru_cache(maxsize=4096)
def client_may_set(name: str) -> bool:
    """Whether a client's body key may go on to the call (and so, unless lmgate reads it, to the
    provider)."""
    if name in CLIENT_BLOCKED or name.startswith(_BLOCKED_PREFIXES):
        return False
    return not is_secret_name(name)


def forwardable(body: dict[str, Any], also: tuple[str, ...] = ()) -> dict[str, Any]:
    """``body`` without the keys a client may not set, nor those named in ``also`` (a request
    passed through as sent drops ``timeout``: the proxy applies it)."""
    return {k: v for k, v in body.items() if k not in also and (not isinstance(k, str) or client_may_set(k))}


__all__ = ["CLIENT_BLOCKED", "REFERENCE_CONFIG_NAMES", "client_may_set", "forwardable"]
