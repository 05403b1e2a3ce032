"""Issue 15 review: the management API under hostile input, through a real ``lmgate serve`` on
SQLite and on PostgreSQL. Every bad value is a 400 naming its field (never a 500 carrying SQL),
and no bad request leaves a row behind that breaks a later answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import test_proxy_keys
from fakes import LogReceiver
from test_proxy_keys import BOTH_STORES, admin, chat, generate
from test_proxy_server import Served

from lmgate.control import migrations
from lmgate.control.store import KeyStore

served = test_proxy_keys.served  # the fixture: a served proxy on SQLite or PostgreSQL

LONG = "x" * 300
ALL_VERSIONS = [version for version, _what, _step in migrations.MIGRATIONS]

# (route, body, the field the 400 names)
BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    # a lifetime past the year 9999: the key was stored, then its answer (and /key/list) failed
    ("/key/generate", {"duration": "99999999999999999999d"}, "duration"),
    ("/user/new", {"user_id": "u-long-life", "duration": "999999999999999d"}, "duration"),
    ("/key/generate", {"budget_duration": "9" * 40 + "d"}, "budget_duration"),
    # past PostgreSQL's int4 and its column lengths: a 500 with the SQL in its message
    ("/key/generate", {"rpm_limit": 2**31}, "rpm_limit"),
    ("/key/generate", {"key_alias": LONG}, "key_alias"),
    ("/key/generate", {"key_alias": "a\u0000b"}, "key_alias"),
    ("/key/generate", {"models": ["fast", "x\u0000"]}, "models"),
    ("/key/generate", {"metadata": {"blob": "x" * 100_000}}, "metadata"),
    ("/team/new", {"team_id": LONG}, "team_id"),
    ("/team/new", {"team_alias": LONG}, "team_alias"),
    ("/user/new", {"user_id": LONG}, "user_id"),
    ("/user/new", {"user_email": "a\u0000@b"}, "user_email"),
    ("/customer/new", {"user_id": LONG}, "user_id"),
    ("/customer/block", {"user_ids": [LONG]}, "user_ids"),
    ("/team/update", {"team_id": "t\u0000"}, "team_id"),
    # a chosen key text must look like a key and be long enough not to be guessed
    ("/key/generate", {"key": "sk-short"}, "key"),
    ("/key/generate", {"key": 12345}, "key"),
]


@BOTH_STORES
def test_hostile_values_are_400s_naming_the_field(served: Served) -> None:
    wrong = []
    for path, body, field in BAD_BODIES:
        r = admin(served, "POST", path, json=body)
        error = r.json()["error"] if r.status_code != 200 else {}
        if r.status_code != 400 or error.get("param") != field or "SQL" in error.get("message", ""):
            wrong.append((path, field, r.status_code, r.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))
    # nothing half-made: every list still answers
    for listing in ("/key/list?return_full_object=true", "/team/list", "/user/list", "/customer/list"):
        assert admin(served, "GET", listing).status_code == 200, listing


@BOTH_STORES
def test_lookups_and_filters_at_the_edges(served: Served) -> None:
    # 9999-12-31, the far end scripts send for "no end": its next midnight is no date (was a 500)
    for path in (
        "/spend/logs?start_date=2020-01-01&end_date=9999-12-31",
        "/global/spend/report?start_date=0001-01-01&end_date=9999-12-31&group_by=api_key",
        "/global/spend/report?start_date=2020-01-01&end_date=9999-12-31&group_by=team",
    ):
        r = admin(served, "GET", path)
        assert r.status_code == 200, (path, r.text)
        assert r.json() == []
    # a NUL in a lookup is a 400 naming the field (PostgreSQL refused the statement: a 500)
    for path, field in [
        ("/team/info?team_id=t%00", "team_id"),
        ("/user/info?user_id=u%00", "user_id"),
        ("/key/list?team_id=t%00", "team_id"),
        ("/spend/logs?user_id=u%00", "user_id"),
    ]:
        r = admin(served, "GET", path)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["param"] == field


@BOTH_STORES
def test_key_aliases_are_unique(served: Served) -> None:
    first = generate(served, key_alias="search-bot")
    r = admin(served, "POST", "/key/generate", json={"key_alias": "search-bot"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "key_alias"
    other = generate(served, key_alias="other-bot")
    for route in ("/key/update", "/key/regenerate"):
        r = admin(served, "POST", route, json={"key": other["key"], "key_alias": "search-bot"})
        assert r.status_code == 400, (route, r.text)
        assert r.json()["error"]["param"] == "key_alias"
    # /user/new's own key too, and then no user is left without the key it asked for
    r = admin(served, "POST", "/user/new", json={"user_id": "u-dup", "key_alias": "search-bot"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "key_alias", r.text
    assert admin(served, "GET", "/user/info?user_id=u-dup").status_code == 404
    # a key keeps its own alias through an update
    r = admin(served, "POST", "/key/update", json={"key": first["key"], "key_alias": "search-bot"})
    assert r.status_code == 200, r.text
    assert [
        k["key_alias"] for k in admin(served, "GET", "/key/list?return_full_object=true").json()["keys"]
    ] == [
        "search-bot",
        "other-bot",
    ]


@BOTH_STORES
def test_a_chosen_key_text_is_the_key(served: Served) -> None:
    chosen = "sk-chosen-by-the-admin-0001"
    made = generate(served, key=chosen)
    assert made["key"] == chosen
    assert chat(served, chosen).choices[0].message.content == "Hello from fake"
    r = admin(served, "POST", "/key/generate", json={"key": chosen})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "key"
    assert chosen not in r.text


async def test_instances_starting_at_once_on_postgresql_all_start(postgres_server: Any) -> None:
    """Several proxies starting together against one new PostgreSQL database: each runs the
    migrations; without a lock two both create the version table and the loser's start failed."""
    for _ in range(3):  # a race: a few fresh databases, each with several starts at once
        url = postgres_server.create_database()
        stores = [KeyStore(url) for _ in range(4)]
        try:
            applied = await asyncio.gather(*(s.start() for s in stores), return_exceptions=True)
            assert not [a for a in applied if isinstance(a, BaseException)], applied
            # exactly one start applied the migrations; the others found the schema done
            assert sorted(applied, key=len) == [[], [], [], ALL_VERSIONS], applied
        finally:
            for s in stores:
                await s.close()


def test_a_body_cannot_write_any_key_identity_name(served: Served, log_receiver: LogReceiver) -> None:
    """Every ``user_api_key*`` name in a request's metadata is the proxy's: a client's
    ``user_api_key_dict`` / ``user_api_key_auth`` (names the reference's hooks read) stays under
    ``requester_metadata``, as the listed names already did."""
    key = generate(served, key_alias="real")["key"]
    spoof = {
        "user_api_key_dict": {"team_id": "spoof", "user_role": "proxy_admin"},
        "user_api_key_auth": {"api_key": "spoof"},
        "user_api_key_alias": "spoof",
        "user_api_key_future_field": "spoof",
        "user_api_end_user_budget": "spoof",
        "mine": 1,
    }
    chat(served, key, metadata=spoof)
    assert log_receiver.wait_for_records(1, timeout=10)
    metadata = log_receiver.records[0]["metadata"]
    assert metadata["user_api_key_alias"] == "real"
    # as sent, but for a credential name's value (masked where the payload is built)
    assert metadata["requester_metadata"] == {**spoof, "user_api_key_auth": {"api_key": "****"}}
    assert metadata["mine"] == 1
    assert "spoof" not in json.dumps({k: v for k, v in metadata.items() if k != "requester_metadata"})


def test_a_key_named_in_the_path_never_reaches_the_log(served: Served) -> None:
    """``POST /key/{key}/regenerate`` carries a key's text in the path (the reference's spelling,
    so scripts use it); the request's log line masks it (``sk-abcd****``), and the old text is
    refused at once."""
    old = generate(served, key_alias="in-path")["key"]
    r = admin(served, "POST", f"/key/{old}/regenerate", json={})
    assert r.status_code == 200, r.text
    new = r.json()["key"]
    assert admin(served, "POST", f"/key/{old}/regenerate", json={}).status_code == 404  # refused at once
    admin(served, "GET", "/key/list")  # a later line: the lines before it are written
    served.stop()
    log = served.stderr
    assert "/regenerate 200" in log
    assert old not in log and old.removeprefix("sk-") not in log and new not in log
