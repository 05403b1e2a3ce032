"""A call heard only by the store takes a shorter record path in the serving process: its record
borrows the caller's metadata dict instead of copying it when the call starts
(``CallRecord(borrow_metadata=True)``, ``dispatch.Plan.takes_records``), and the process writer
takes the call's facts from the running record. The stored rows and payloads must be the very
ones the full path (a summary frozen from a record that copied everything) gives, for every
shape of call: plain, with a key's and team's identity, user and tags, streamed, failed, cached,
through a Router's fallbacks and retries, async. Real calls against the fake provider, real
child process, real SQLite files."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from fakes import Reply

import lmgate
from lmgate._retry import RetryPolicy
from lmgate.loggers.store import StoreLogger
from lmgate.store import Filters, Page

pytest.importorskip("sqlalchemy")

KEY = "sk-test-store-paths"
FAST = RetryPolicy(sleep=lambda _: None, base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)
# the identity the proxy stamps on a call (proxy/identity.py), as a virtual key's call has it
IDENTITY = {
    "user_api_key_hash": "9f2c0d",
    "user_api_key_alias": "ci-key",
    "user_api_key_spend": 0.25,
    "user_api_key_max_budget": 10.0,
    "user_api_key_team_id": "team-a",
    "user_api_key_team_alias": "Team A",
    "user_api_key_user_id": "u-1",
    "user_api_key_request_route": "/v1/chat/completions",
    "user_api_key_auth_metadata": {"env": "ci"},
    "team_id": "team-a",
    "requester_ip_address": "127.0.0.1",
    "requester_metadata": {},
    "tags": ["blue", "green"],
}


class Borrowed:
    """Listed first: whether each call's record still borrowed its metadata at the terminal event
    (a sink that takes records keeps the short path on; it answers False, so nothing else changes)."""

    reads_payload_only = True  # as the store: reads no request

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def take_record(self, record, event) -> bool:
        self.seen.append(record._metadata_borrowed)
        return False

    def take(self, summary, event) -> None:
        pass


def rows_of(logger: StoreLogger) -> list[dict]:
    return sorted(logger.store.query(Filters(), Page(limit=1000)), key=lambda r: r["call_id"])


def deployment(fp, name: str, model: str, id: str) -> dict:
    params = {"model": f"openai/{model}", "api_base": fp.base_url + "/v1", "api_key": KEY}
    return {"model_name": name, "litellm_params": params, "model_info": {"id": id}}


def test_rows_of_calls_heard_only_by_stores_equal_the_full_paths_rows(tmp_path, fake_provider):
    child = StoreLogger(path=str(tmp_path / "process.sqlite3"), spool="off", writer="process")
    full = StoreLogger(path=str(tmp_path / "thread.sqlite3"), spool="off", writer="thread")
    probe = Borrowed()
    lmgate.callbacks = [probe, child, full]
    fp = fake_provider
    # as the proxy calls (``_metadata_unshared``: nothing changes the metadata while a call runs)
    base = {"api_base": fp.base_url + "/v1", "api_key": KEY, "_metadata_unshared": True}
    msgs = [{"role": "user", "content": "hello paths"}]
    try:
        # plain; a key's, team's and user's call with tags and parameters (its metadata changed by
        # the caller once the call returned: the row keeps what the call was made with)
        lmgate.completion(model="openai/gpt-4o-mini", messages=msgs, **base)
        metadata = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in IDENTITY.items()}
        lmgate.completion(
            model="openai/gpt-4o-mini",
            messages=msgs,
            user="alice",
            temperature=0.2,
            metadata=metadata,
            **base,
        )
        metadata["tags"].append("changed-after")
        metadata["user_api_key_auth_metadata"]["env"] = "changed-after"
        # streamed, its metadata changed by the caller while it reads the chunks
        streamed_md = {"tags": ["s"], "requester_metadata": {"k": "v"}}
        chunks = lmgate.completion(
            model="openai/gpt-4o-mini", messages=msgs, stream=True, metadata=streamed_md, **base
        )
        first = next(iter(chunks))
        streamed_md["tags"].append("changed-while-streaming")
        streamed_md["requester_metadata"]["k"] = "changed"
        assert first is not None and list(chunks) is not None
        # a failure
        fp.enqueue(Reply(status=400))
        with pytest.raises(lmgate.exceptions.BadRequestError):
            lmgate.completion(model="openai/gpt-4o-mini", messages=msgs, metadata=dict(IDENTITY), **base)
        # cached: the second is a cache hit
        lmgate.cache = lmgate.Cache()
        for _ in range(2):
            lmgate.completion(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": "cache me"}],
                caching=True,
                **base,
            )
        lmgate.cache = None
        # a Router: a retried deployment, then a fallback to another; then a request every deployment fails
        router = lmgate.Router(
            model_list=[deployment(fp, "small", "model-small", "s"), deployment(fp, "big", "model-big", "b")],
            fallbacks=[{"small": ["big"]}],
            num_retries=1,
            retry_policy=FAST,
        )
        fp.enqueue(Reply(status=500), Reply(status=500))
        assert (
            router.completion(
                model="small", messages=msgs, metadata=dict(IDENTITY), _metadata_unshared=True
            )._hidden_params["model_id"]
            == "b"
        )
        fp.enqueue(*[Reply(status=500)] * 4)
        with pytest.raises(lmgate.exceptions.InternalServerError):
            router.completion(model="small", messages=msgs, metadata=dict(IDENTITY), _metadata_unshared=True)
        # async, as the proxy calls
        asyncio.run(
            lmgate.acompletion(model="openai/gpt-4o-mini", messages=msgs, metadata=dict(IDENTITY), **base)
        )
        assert child.flush(30) and full.flush(30)
    finally:
        lmgate.callbacks = []
        lmgate.cache = None
    # the short path was taken where it may be: every call but the stream and the held-back failures
    assert probe.seen.count(True) >= 5 and probe.seen.count(False) >= 1
    theirs, ours = rows_of(child), rows_of(full)
    assert len(theirs) == len(ours) == 9
    assert theirs == ours
    assert {r["team_id"] for r in theirs} >= {"team-a"} and any(r["cache_hit"] for r in theirs)
    payloads = [(child.store.get(r["call_id"]), full.store.get(r["call_id"])) for r in theirs]
    assert all(a is not None and a == b for a, b in payloads)
    stored = str(payloads)
    assert "changed-after" not in stored and "changed-while-streaming" not in stored
    assert "'k': 'changed'" not in stored


class Hook(lmgate.CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:
        pass


def test_an_answer_heard_only_by_the_store_is_encoded_once(tmp_path):
    """The proxy writes the JSON the store's record took of the answer as the answer's body
    (``encoded_answer``): the bytes ``orjson.dumps`` gives, for that very object only, and never
    when anything else (a logger's hook) hears the call."""
    from lmgate._callbacks.record import encoded_answer

    store = StoreLogger(path=str(tmp_path / "s.sqlite3"), spool="off", writer="process")
    msgs = [{"role": "user", "content": "once"}]
    once = {"messages": msgs, "_metadata_unshared": True}  # as the proxy calls
    lmgate.callbacks = [store]
    try:
        first = lmgate.completion(model="openai/gpt-4o-mini", mock_response="one", **once)
        assert encoded_answer(first) == orjson.dumps(first)
        second = lmgate.completion(model="openai/gpt-4o-mini", mock_response="two", **once)
        assert encoded_answer(first) is None and encoded_answer(second) == orjson.dumps(second)
        assert encoded_answer(dict(second)) is None  # an equal object is not that object
        lmgate.callbacks = [store, Hook()]
        heard = lmgate.completion(model="openai/gpt-4o-mini", mock_response="three", **once)
        assert encoded_answer(heard) is None
        assert store.flush(30) and store.stats()["delivered"] == 3
    finally:
        lmgate.callbacks = []


def test_a_row_keeps_the_metadata_a_call_was_made_with_when_the_caller_changes_it_mid_call(
    tmp_path, fake_provider
):
    """The caller's metadata dict changed while the call waits for its provider (another task or
    thread of the caller, a proxy moderation hook running beside the call): the stored row keeps
    the metadata as the call was made with it, as when the record copied it at the start — the
    same whether the store alone hears the call or another logger hears it too."""
    import threading

    fp = fake_provider
    base = {"api_base": fp.base_url + "/v1", "api_key": KEY}
    msgs = [{"role": "user", "content": "mid-call"}]
    rows = {}
    for name, extra in (("alone", []), ("with-hook", [Hook()])):
        store = StoreLogger(path=str(tmp_path / f"{name}.sqlite3"), spool="off", writer="process")
        lmgate.callbacks = [store, *extra]
        release = threading.Event()
        fp.enqueue(Reply(delay_event=release))
        metadata = {"tags": ["before"], "requester_metadata": {"k": "before"}}
        done: list[object] = []
        seen = len(fp.requests)
        worker = threading.Thread(
            target=lambda done=done, metadata=metadata: done.append(
                lmgate.completion(model="openai/gpt-4o-mini", messages=msgs, metadata=metadata, **base)
            )
        )
        worker.start()
        try:
            assert fp.wait_for_requests(seen + 1, 10)  # the call is in flight
            metadata["tags"].append("changed-mid-call")
            metadata["requester_metadata"]["k"] = "changed-mid-call"
        finally:
            release.set()
            worker.join(10)
        try:
            assert done and store.flush(30)
        finally:
            lmgate.callbacks = []
        (row,) = rows_of(store)
        rows[name] = (row["tags"], store.store.get(row["call_id"]))
    stored = str(rows)
    assert "changed-mid-call" not in stored, stored


MODERATION_HOOK = '''
import asyncio

import lmgate


class Tagger(lmgate.CustomLogger):
    """A moderation hook (it runs beside the call) that tags the request once the provider has it."""

    wait_for_provider = None  # set by the test: True once the provider holds the call
    release = None  # set by the test: lets the provider answer

    async def async_moderation_hook(self, data, user_api_key_dict, call_type):
        if self.wait_for_provider is None:
            return
        try:
            if await asyncio.to_thread(self.wait_for_provider):
                data["metadata"]["tags"].append("moderated-mid-call")
        finally:
            self.release()


tagger = Tagger()
'''


async def test_a_proxy_moderation_hook_that_changes_the_metadata_mid_call_leaves_the_row_as_sent(
    tmp_path, fake_provider, monkeypatch
):
    """Through the proxy: a moderation hook runs beside the call and may change the request's
    metadata (its nested values are the call's too) while the provider answers; the stored row
    keeps the tags the call was made with (the record copies the metadata when moderation hooks
    run, rather than borrowing it)."""
    import sys
    import threading

    import httpx

    from lmgate.proxy.app import create_app
    from lmgate.proxy.config import load_config
    from lmgate.store import open_store

    (tmp_path / "mod_tagger.py").write_text(MODERATION_HOOK)
    monkeypatch.syspath_prepend(str(tmp_path))
    db = tmp_path / "proxy.sqlite3"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
model_list:
  - model_name: fast
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {fake_provider.base_url}/v1
      api_key: {KEY}
litellm_settings:
  callbacks: ["mod_tagger.tagger", "store"]
callback_settings:
  store:
    path: {db}
    spool: "off"
    writer: process
"""
    )
    app = create_app(load_config(str(config)))
    tagger = sys.modules["mod_tagger"].tagger
    release = threading.Event()
    fake_provider.enqueue(Reply(delay_event=release))

    # the hook changes the tags while the provider holds the call, then lets it answer
    tagger.wait_for_provider = lambda: fake_provider.wait_for_requests(1, 10)
    tagger.release = release.set
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "metadata": {"tags": ["sent"]}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client:
        answer = await client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    assert lmgate.flush_callbacks(30)
    store = open_store(str(db))
    try:
        (row,) = store.query(Filters(), Page(limit=10))
    finally:
        store.close()
    assert row["tags"] == ["sent"]
