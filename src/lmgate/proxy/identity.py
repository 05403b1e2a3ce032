"""Who is calling, as the log payload says it: the metadata fields only the proxy sets.

A client's request ``metadata`` lands in every log record, so without care a client could
write ``user_api_key_hash`` or ``user_api_key_team_id`` there and be logged (and billed) as
someone else. The proxy owns the names in ``PROXY_OWNED_METADATA``: it removes them from the
metadata it passes on, sets them from the authenticated key and the connection, and keeps
the client's metadata, as sent, under ``requester_metadata`` (as the reference does). The
same stamp is applied again after the pre-call hooks, so a hook may change the request but
not who made it.

The client's metadata is deep-copied once per request, by ``identity``, before any hook runs:
that copy is the proxy's own. What the hooks see under ``requester_metadata`` is a plain dict
of the client's metadata as parsed (theirs to change); the stamp after the hooks puts the
proxy's copy back, and the call copies it into its log record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._callbacks.record import copy_data
from .auth import UserAPIKeyAuth

#: metadata names only the proxy sets: every key-identity field of the reference's payload,
#: the caller's address and agent, and ``requester_metadata`` (where the client's own go)
PROXY_OWNED_METADATA = frozenset(
    {
        "user_api_key",
        "user_api_key_hash",
        "user_api_key_alias",
        "user_api_key_spend",
        "user_api_key_max_budget",
        "user_api_key_budget_reset_at",
        "user_api_key_user_spend",
        "user_api_key_user_max_budget",
        "user_api_key_team_spend",
        "user_api_key_team_max_budget",
        "user_api_key_org_id",
        "user_api_key_org_alias",
        "user_api_key_team_id",
        "user_api_key_project_id",
        "user_api_key_project_alias",
        "user_api_key_user_id",
        "user_api_key_user_email",
        "user_api_key_team_alias",
        "user_api_key_end_user_id",
        "user_api_key_request_route",
        "user_api_key_auth_metadata",
        "user_api_key_metadata",
        "user_api_end_user_max_budget",
        "requester_ip_address",
        "user_agent",
        "requester_metadata",
        "team_id",
        "team_alias",
        # set by the proxy when a pre-call hook answered (``routes/llm.py``), after the stamp
        "answered_by_pre_call_hook",
    }
)


#: and every name in the proxy's namespaces: a client's ``user_api_key_dict``, ``user_api_key_auth``
#: or a name the reference adds later must not reach a logger as if the proxy had set it
PROXY_OWNED_PREFIXES = ("user_api_key", "user_api_end_user")


def proxy_owned(name: str) -> bool:
    """Whether a metadata name is the proxy's to set (a client's is moved to ``requester_metadata``)."""
    return name in PROXY_OWNED_METADATA or (isinstance(name, str) and name.startswith(PROXY_OWNED_PREFIXES))


def identity(
    user: UserAPIKeyAuth,
    client_host: str | None,
    client_metadata: Mapping[str, Any] | None,
    route: str | None = None,
) -> dict[str, Any]:
    """The proxy-owned metadata of one request: who the key says is calling (its budgets and
    spend as the key's lookup read them), from where, on which route, and the client's own
    metadata as it was sent."""
    # one dict display (a presized dict, each attribute a slot read): this runs once a request,
    # and ``dict(zip(names, attrgetter(*names)(user)))`` cost ~13,000 instructions more (issue 18).
    # The payload's order: the key's identity, the route, the key's metadata, the team again
    # (the reference repeats it in two more names), the address, the client's metadata.
    return {
        "user_api_key_hash": user.api_key,
        "user_api_key_alias": user.key_alias,
        "user_api_key_spend": user.spend,
        "user_api_key_max_budget": user.max_budget,
        "user_api_key_team_id": user.team_id,
        "user_api_key_team_alias": user.team_alias,
        "user_api_key_team_spend": user.team_spend,
        "user_api_key_team_max_budget": user.team_max_budget,
        "user_api_key_user_id": user.user_id,
        "user_api_key_user_email": user.user_email,
        "user_api_key_user_spend": user.user_spend,
        "user_api_key_user_max_budget": user.user_max_budget,
        "user_api_key_org_id": user.org_id,
        "user_api_key_end_user_id": user.end_user_id,
        "user_api_end_user_max_budget": user.end_user_max_budget,
        "user_api_key_request_route": route,
        "user_api_key_auth_metadata": user.metadata or None,  # the key's metadata as the admin set it
        "team_id": user.team_id,
        "team_alias": user.team_alias,
        "requester_ip_address": client_host,
        # the one deep copy: no hook ever holds it, so what a hook changes never reaches it
        "requester_metadata": copy_data(dict(client_metadata)) if client_metadata else {},
    }


def stamp(metadata: Any, who: Mapping[str, Any], requester: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``metadata`` without any proxy-owned name, with ``who`` (from ``identity``) set;
    ``requester_metadata`` is ``requester`` when given (what hooks will see), else ``who``'s."""
    # proxy_owned's test inline: this runs over every name of the metadata, twice a request
    owned, prefixes = PROXY_OWNED_METADATA, PROXY_OWNED_PREFIXES
    out = (
        {
            k: v
            for k, v in metadata.items()
            if k not in owned and not (isinstance(k, str) and k.startswith(prefixes))
        }
        if isinstance(metadata, dict)
        else {}
    )
    out.update(who)
    if requester is not None:
        out["requester_metadata"] = requester
    return out


__all__ = ["PROXY_OWNED_METADATA", "PROXY_OWNED_PREFIXES", "identity", "proxy_owned", "stamp"]
