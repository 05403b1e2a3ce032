"""The identity stamped on every proxied call: its names in the payload's order, each read from
the key's identity (issue 18 builds it as one dict display; these pin what it holds)."""

from __future__ import annotations

from lmgate.proxy.auth import UserAPIKeyAuth
from lmgate.proxy.identity import PROXY_OWNED_METADATA, identity, stamp

# name in the payload -> the identity's attribute it is read from, in the payload's order
_FROM_KEY = {
    "user_api_key_hash": "api_key",
    "user_api_key_alias": "key_alias",
    "user_api_key_spend": "spend",
    "user_api_key_max_budget": "max_budget",
    "user_api_key_team_id": "team_id",
    "user_api_key_team_alias": "team_alias",
    "user_api_key_team_spend": "team_spend",
    "user_api_key_team_max_budget": "team_max_budget",
    "user_api_key_user_id": "user_id",
    "user_api_key_user_email": "user_email",
    "user_api_key_user_spend": "user_spend",
    "user_api_key_user_max_budget": "user_max_budget",
    "user_api_key_org_id": "org_id",
    "user_api_key_end_user_id": "end_user_id",
    "user_api_end_user_max_budget": "end_user_max_budget",
}


def _user() -> UserAPIKeyAuth:
    user = UserAPIKeyAuth("hash-1", key_alias="alias", team_id="team", team_alias="Team", user_id="u1")
    for n, attribute in enumerate(_FROM_KEY.values()):  # every field a value of its own
        if getattr(user, attribute) is None:
            setattr(user, attribute, f"v{n}")
    user.metadata = {"owner": "ops"}
    return user


def test_identity_names_come_in_the_payload_order_each_from_its_attribute() -> None:
    user = _user()
    client_metadata = {"app": "x", "nested": {"a": [1]}}
    who = identity(user, "10.0.0.1", client_metadata, "/v1/chat/completions")
    assert list(who) == [
        *_FROM_KEY,
        "user_api_key_request_route",
        "user_api_key_auth_metadata",
        "team_id",
        "team_alias",
        "requester_ip_address",
        "requester_metadata",
    ]
    for name, attribute in _FROM_KEY.items():
        assert who[name] == getattr(user, attribute), name
    assert who["user_api_key_request_route"] == "/v1/chat/completions"
    assert who["user_api_key_auth_metadata"] == {"owner": "ops"}
    assert (who["team_id"], who["team_alias"]) == ("team", "Team")
    assert who["requester_ip_address"] == "10.0.0.1"
    # the proxy's own deep copy of what the client sent
    assert who["requester_metadata"] == client_metadata
    assert who["requester_metadata"]["nested"] is not client_metadata["nested"]
    assert set(who) <= PROXY_OWNED_METADATA


def test_identity_of_a_keyless_caller_without_metadata() -> None:
    who = identity(UserAPIKeyAuth(None), None, None)
    assert who["user_api_key_hash"] is None
    assert who["user_api_key_auth_metadata"] is None
    assert who["requester_metadata"] == {}
    assert who["user_api_key_request_route"] is None


def test_stamping_with_the_proxys_copy_equals_stamping_and_putting_it_back() -> None:
    """Without hooks the route stamps who's own requester_metadata at once; with hooks it stamps a
    plain copy, and the call's stamp puts who's back: the same dict, key for key, in order."""
    user = _user()
    sent = {"app": "x", "user_api_key_hash": "forged", "tags": ["a"]}
    who = identity(user, "h", sent, "/r")
    with_hooks = stamp(sent, who, requester=dict(sent))
    again = stamp(with_hooks, who)
    at_once = stamp(sent, who)
    assert list(at_once.items()) == list(again.items())
    assert at_once["requester_metadata"] is who["requester_metadata"]
    assert at_once["user_api_key_hash"] == "hash-1"
