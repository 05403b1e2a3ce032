"""No secret in any channel (issue 11 point 11): the deployment's key, and what an ``api_base``
holds (a URL password, ``?api-key=``), never reach a callback, a hook, a log or the caller,
even when the upstream echoes them in its error body and its response headers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fakes import FakeProvider, Reply
from helpers import MESSAGES, flush

import lmgate
from lmgate import _secrets
from lmgate.testing import CapturingLogger

KEY = "deploy-key-Zq8v7Xw3Rt5Yp1Lm"  # not sk- shaped: no pattern would catch it, only knowing it does
PASSWORD = "pw-Hk29dLq8Ws"
QUERY_KEY = "qk-Vn47Bc1Xo9"
BASIC = base64.b64encode(f"gate-user:{PASSWORD}".encode()).decode()
SECRETS = (KEY, PASSWORD, QUERY_KEY, BASIC)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def exception_text(error: BaseException) -> str:
    parts = [str(error), repr(error), repr(error.args)]
    for name in ("message", "body", "response_headers"):
        parts.append(repr(getattr(error, name, None)))
    return "\n".join(parts)


def events_text(capture: CapturingLogger) -> str:
    out = []
    for e in capture.events:
        out.append(repr(e.kwargs))  # every lazy key is built for the repr
        out.append(repr(e.response_obj))
        out.append(repr(getattr(e.response_obj, "_hidden_params", None)))
        exc = e.kwargs.get("exception")
        if exc is not None:
            out.append(exception_text(exc))
    return "\n".join(out)


# ---------------------------------------------------------------- the masking functions


def test_mask_url_masks_the_password_and_secret_query_values_only() -> None:
    """A URL keeps its shape; its password and secret-looking query values become ****."""
    url = f"https://gate-user:{PASSWORD}@llm.example:8443/v1?api-key={QUERY_KEY}&api-version=2024-10-21&sig=abc&token=t0k3n"
    assert _secrets.mask_url(url) == (
        "https://gate-user:****@llm.example:8443/v1?api-key=****&api-version=2024-10-21&sig=****&token=****"
    )
    assert _secrets.mask_url("https://ghp_tokenAsUser@host/v1") == "https://****@host/v1"
    assert _secrets.mask_url("http://127.0.0.1:4000/v1") == "http://127.0.0.1:4000/v1"
    assert _secrets.mask_url(None) is None


def test_url_secrets_lists_what_the_url_holds() -> None:
    """The password, the Basic header it makes, and secret query values are this URL's secrets."""
    url = f"http://gate-user:{PASSWORD}@127.0.0.1:1/v1?api-key={QUERY_KEY}&api-version=1"
    assert set(_secrets.url_secrets(url)) == {PASSWORD, BASIC, QUERY_KEY}


def test_url_secrets_lists_a_query_secret_as_written_and_decoded() -> None:
    """An error may echo a query secret percent-encoded, decoded, or with + as a space."""
    assert set(_secrets.url_secrets("http://h/v1?key=qv%2Fenc0ded+99&api-version=1")) == {
        "qv%2Fenc0ded+99",
        "qv/enc0ded+99",
        "qv/enc0ded 99",
    }


def test_header_secrets_lists_credential_header_values() -> None:
    headers = {
        "x-goog-api-key": "goog-1234567",
        "Authorization": "Bearer tok-1234567",
        "x-trace": "abc123456",
    }
    assert set(_secrets.header_secrets(headers)) == {"goog-1234567", "Bearer tok-1234567", "tok-1234567"}


def test_secret_query_names_are_matched_on_whole_words() -> None:
    for name in (
        "key",
        "api-key",
        "apiKey",
        "access_token",
        "X-Amz-Signature",
        "sig",
        "code",
        "x-auth",
        "pwd",
    ):
        assert _secrets.is_secret_param(name), name
    for name in ("decode", "author", "api-version", "monkey", "keyword", "barcode"):
        assert not _secrets.is_secret_param(name), name


def test_free_text_masking_masks_urls_in_it() -> None:
    """scrub masks a URL's password and secret query values wherever a URL sits in text."""
    text = "cannot reach https://u:s3cretPassw0rd@sink.example/?token=tok12345678&v=1, nor http://x/?decode=1"
    assert (
        _secrets.scrub(text)
        == "cannot reach https://u:****@sink.example/?token=****&v=1, nor http://x/?decode=1"
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"usage": {"prompt_tokens": 9, "completion_tokens": 12}, "choices": [{"text": "hi"}]}',
        "usage prompt_tokens=3 and access_token=abcdef123456 then Bearer abc.def-ghi",
        "ACCESS-TOKEN: zzzzzzzzzz x-api-key=qqqqqqqq sk-proj-ABCDEFGHIJKLMNOP",
        'Basic dXNlcjpwYXNz; {"api_key": "k-1234567890"} password = hunter22 secret:s3cr3tvalue',
        # non-ASCII letters a case-insensitive pattern matches as ASCII ones (ſ→s, ı/İ→i, K→k)
        "paſſword=abcdefgh ſecret: qwertyuiop baſıc dXNlcjpwYXNz baſİc dXNlcjpwYXNz api_Key=12345678",
        "tokens only: token token_count 77",
    ],
)
def test_scrub_masks_what_running_every_pattern_masks(text: str) -> None:
    """scrub runs a pattern only on text holding a word every match of it holds (a response
    body's "prompt_tokens" no longer runs all four): what it masks is what running them all does."""
    expected = text
    for pattern, _ in _secrets._PATTERNS:
        expected = pattern.sub(_secrets._keep_prefix, expected)
    assert _secrets.scrub(text) == expected


def test_upstream_headers_drops_credential_headers_and_scrubs_values() -> None:
    """set-cookie, authorization, x-api-key, api-key, proxy-authorization and cookie go; a key in any other value is masked."""
    headers = {
        "Set-Cookie": f"s={KEY}",
        "authorization": f"Bearer {KEY}",
        "x-api-key": KEY,
        "api-key": KEY,
        "proxy-authorization": "Basic x",
        "cookie": "a=b",
        "x-request-id": "req_1",
        "x-echo": f"you sent {KEY}",
    }
    out = _secrets.upstream_headers(headers, [KEY])
    assert set(out) == {"x-request-id", "x-echo"}
    assert out["x-request-id"] == "req_1"
    assert KEY not in out["x-echo"]


# ---------------------------------------------------------------- the library


@pytest.fixture
def echoing(fake_provider: FakeProvider) -> FakeProvider:
    fake_provider.echo_credentials = True
    return fake_provider


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_upstream_error_echoing_the_key_reaches_no_one(echoing: FakeProvider, is_async: bool) -> None:
    """An upstream 401 quoting the key in its body and headers: the raised error and every callback see it masked."""
    echoing.enqueue(Reply(status=401))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    params: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": echoing.base_url + "/v1",
        "api_key": KEY,
    }
    with pytest.raises(lmgate.AuthenticationError) as info:
        if is_async:
            import asyncio

            asyncio.run(lmgate.acompletion(**params))
        else:
            lmgate.completion(**params)
    flush()
    assert KEY in echoing.last_request.headers["authorization"]  # the key was sent …
    error = info.value
    assert error.body and "credentials received" in error.body["error"]["message"]  # … and echoed back
    assert leaks(exception_text(error)) == []
    assert "set-cookie" not in {k.lower() for k in error.response_headers}
    assert "x-echo-credential" in error.response_headers  # other headers are kept, masked
    hooks = capture.hooks()
    assert len(hooks) == 3 and hooks[-1].endswith("log_failure_event"), hooks  # pre, post, failure
    assert leaks(events_text(capture)) == []


def test_upstream_headers_echoing_the_key_reach_no_one(echoing: FakeProvider) -> None:
    """A success whose headers echo the key: additional_headers keep llm_provider- headers, without the key or credential headers."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    response = lmgate.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, api_base=echoing.base_url + "/v1", api_key=KEY
    )
    flush()
    headers = response._hidden_params["additional_headers"]
    assert "llm_provider-x-request-id" in headers and "x-ratelimit-remaining-requests" in headers
    assert "llm_provider-x-echo-credential" in headers
    for name in ("set-cookie", "authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"):
        assert f"llm_provider-{name}" not in headers
    assert leaks(repr(response._hidden_params)) == []
    assert leaks(events_text(capture)) == []


def test_api_base_with_password_and_query_key_is_used_but_never_shown(echoing: FakeProvider) -> None:
    """user:pw@ and ?api-key= in api_base reach the upstream (Basic auth, query), and show nowhere else."""
    base = f"http://gate-user:{PASSWORD}@127.0.0.1:{echoing.port}/v1?api-key={QUERY_KEY}"
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    response = lmgate.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=base)
    sent = echoing.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.query == {"api-key": QUERY_KEY}
    assert sent.headers["authorization"] == f"Basic {BASIC}"
    assert (
        response._hidden_params["api_base"]
        == f"http://gate-user:****@127.0.0.1:{echoing.port}/v1?api-key=****"
    )
    echoing.enqueue(Reply(status=400))
    with pytest.raises(lmgate.BadRequestError) as info:
        lmgate.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=base)
    flush()
    assert "credentials received" in info.value.body["error"]["message"]
    assert leaks(exception_text(info.value)) == []
    assert leaks(repr(response._hidden_params)) == []
    payloads = [
        e.kwargs["standard_logging_object"] for e in capture.of("log_success_event", "log_failure_event")
    ]
    assert [p["api_base"] for p in payloads] == [response._hidden_params["api_base"]] * 2
    assert leaks(events_text(capture)) == []


def test_security_doc_lists_every_blocked_key_and_proxy_owned_name() -> None:
    """docs/security.md names every body key the proxy drops and every metadata name it owns."""
    from pathlib import Path

    from lmgate.proxy.identity import PROXY_OWNED_METADATA
    from lmgate.proxy.routes.llm import _CLIENT_BLOCKED

    doc = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
    blocked = doc.split("## What a request body can never change", 1)[1]
    missing = [name for name in sorted(_CLIENT_BLOCKED | PROXY_OWNED_METADATA) if f"`{name}`" not in blocked]
    assert missing == []


def test_masking_filter_masks_messages_and_tracebacks() -> None:
    """A handler with MaskingFilter prints no remembered secret, in the message or the traceback."""
    import io
    import logging

    _secrets.remember_secret(KEY)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_secrets.MaskingFilter())
    log = logging.getLogger("lmgate.test-masking")
    log.addHandler(handler)
    try:
        try:
            raise ValueError(f"upstream said {KEY}")
        except ValueError:
            log.error("call failed with key %s", KEY, exc_info=True)
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "call failed with key" in text and "ValueError: upstream said" in text
    assert KEY not in text


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("x-api-key", True),
        ("Authorization", True),
        ("proxy-authorization", True),
        ("password", True),
        ("client_secret", True),
        ("aws_secret_access_key", True),
        ("langfuse_secret_key", True),
        ("refresh_token", True),
        ("vertex_credentials", True),
        ("set-cookie", True),
        ("cache_key", False),
        ("key_alias", False),
        ("max_tokens", False),
        ("prompt_tokens", False),
        ("token", False),  # a logprob's token
        ("signature", False),  # a thinking block's
        ("user_api_key_hash", False),
    ],
)
def test_secret_names_are_credentials_and_only_those(name: str, secret: bool) -> None:
    assert _secrets.is_secret_name(name) is secret


def test_mask_data_masks_credential_names_and_key_shaped_text_at_any_depth() -> None:
    data = {
        "api_key": "plain-credential-value",
        "note": "see sk-abcdefghijklmnop1234",
        "headers": {"Authorization": "Bearer tok123456789", "x-plain": "kept"},
        "deep": [{"session_token": "nested-token-value"}, ("short", 3)],
        "empty_password": "",
        "count": 3,
    }
    masked = _secrets.mask_data(data)
    assert masked == {
        "api_key": "****",
        "note": "see sk-abcd****",
        "headers": {"Authorization": "****", "x-plain": "kept"},
        "deep": [{"session_token": "****"}, ["short", 3]],
        "empty_password": "",
        "count": 3,
    }
    assert data["api_key"] == "plain-credential-value"  # a copy: the input is left alone


def test_mask_data_masks_a_secret_remembered_after_the_same_text_was_masked() -> None:
    """Short strings' answers are cached; a secret remembered later is masked all the same."""
    secret = "remembered-later-9f8e7d"
    assert _secrets.mask_data({"note": secret}) == {"note": secret}
    _secrets.remember_secret(secret)
    assert secret not in repr(_secrets.mask_data({"note": secret}))


def test_a_secret_that_holds_a_shorter_remembered_one_is_masked_whole() -> None:
    """A remembered secret that is the start of another (a key and its own prefix, in either
    order of remembering, or given with the call) never cuts the longer one, whose rest would be
    left in the text."""
    short, long_ = "zq-prefix-7c1d", "zq-prefix-7c1d-tail-Hq83Lw05Xe"
    _secrets.remember_secret(short)
    _secrets.remember_secret(long_)
    for text in (_secrets.scrub(f"key {long_} here"), repr(_secrets.mask_data({"note": f"key {long_}"}))):
        assert "tail-Hq83Lw05Xe" not in text and "Lw05Xe" not in text
    given = "zq-given-7c1d-tail-Pn52Ku19Ra"
    _secrets.remember_secret("zq-given-7c1d")
    assert "Pn52Ku19Ra" not in _secrets.scrub(f"key {given}", (given,))
    assert _secrets.scrub(f"key {short}") == f"key {_secrets.MASK}"


def test_mask_data_leaves_a_short_remembered_value_that_free_text_masks() -> None:
    """A configured value under 16 characters (a log header's "X-Team: search") is masked in
    free text but not in a record's data, where it is more likely a team's name than a key."""
    _secrets.remember_secret("shortval")
    assert _secrets.scrub("team shortval") == "team ****"
    assert _secrets.mask_data({"team": "shortval"}) == {"team": "shortval"}


@pytest.mark.parametrize(
    "data",
    [
        {"team": "search", "tags": ["a", "b"], "n": 3},
        {"api_key": "x"},
        {"X-Api-Key": "value"},
        {"deep": [{"refresh_token": "value"}]},
        {"note": "see sk-abcdefghijklmnop1234"},
        {"note": "Bearer abcdefghij"},
        {"note": "https://u:pw@host/x"},
        {"note": "api_key=abcdefgh"},
        {"note": 'quote"and\nnewline-secret-value-0123'},
        {"note": "PAſſWORD: hunter2hunter2"},
    ],
)
def test_the_quick_check_says_look_closer_whenever_mask_data_would_change_the_data(
    data: dict[str, Any],
) -> None:
    """``json_may_need_masking`` (the payload's fast path for clean metadata) never says "clean"
    where ``mask_data`` would mask something; a clean record is said clean."""
    import orjson

    _secrets.remember_secret('quote"and\nnewline-secret-value-0123')
    changed = _secrets.mask_data(data) != data
    flagged = _secrets.json_may_need_masking(orjson.dumps(data).decode())
    assert flagged or not changed
    assert changed or data != {"team": "search", "tags": ["a", "b"], "n": 3} or not flagged
