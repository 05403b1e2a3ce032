"""lmgate.providers._sigv4: botocore's SigV4 signer with its per-request costs cut gives botocore's signature.

The fake Bedrock (tests/fakes/bedrock.py) checks every signed call end to end with botocore's stock
``SigV4Auth``; these tests pin the parts the fast path changes: the light request and header map,
headers_to_sign built once, the signing key kept per day, the signer re-made when credentials change.
"""

from __future__ import annotations

import calendar

import pytest

pytest.importorskip("botocore")

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials, ReadOnlyCredentials  # noqa: E402

from lmgate.providers._sigv4 import Headers, Signer, SigningRequest, _signer_class  # noqa: E402

URL = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse?a=1&b=x%2Fy"
HEADERS = {
    "Host": "bedrock-runtime.us-east-1.amazonaws.com",
    "Content-Type": "application/json",
    "X-Custom": "  two   spaces ",
    "Connection": "keep-alive",  # never signed (botocore's blacklist)
}
BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'


def stock_signature(creds: ReadOnlyCredentials, timestamp: str, headers: dict[str, str]) -> str:
    request = AWSRequest(method="POST", url=URL, data=BODY, headers=headers)
    request.context["timestamp"] = timestamp
    auth = SigV4Auth(creds, "bedrock", "us-east-1")
    return auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)  # type: ignore[no-any-return]


def fast_signature(auth: SigV4Auth, timestamp: str, headers: dict[str, str]) -> str:
    request = SigningRequest("POST", URL, headers, BODY)
    request.context["timestamp"] = timestamp
    return auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)  # type: ignore[no-any-return]


@pytest.mark.parametrize("token", [None, "session-token"])
def test_the_signature_is_botocores_across_days(token):
    """Same canonical request and signature as stock botocore; a new day derives a new signing key."""
    creds = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    auth = _signer_class()(creds, "bedrock", "us-east-1")
    for timestamp in ("20261130T001500Z", "20261130T235959Z", "20261201T000001Z"):
        assert fast_signature(auth, timestamp, HEADERS) == stock_signature(creds, timestamp, HEADERS)
    assert {"20261130", "20261201"} <= {msg for _, msg in auth._derived}  # a key derived per day


def test_the_headers_added_match_botocores_add_auth():
    """add_auth on the light request adds what it adds on an AWSRequest (names, date, token)."""
    creds = Credentials("AKIDEXAMPLE", "secret", "tok")
    signed = Signer(creds, "bedrock", "us-east-1").headers("POST", URL, HEADERS, BODY)
    assert signed["X-Amz-Security-Token"] == "tok"
    assert signed["Content-Type"] == "application/json" and signed["Host"] == HEADERS["Host"]
    auth = signed["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" + signed["X-Amz-Date"][:8])
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-custom," in auth
    # the signature over what was sent, recomputed by stock botocore
    sent = {k: v for k, v in signed.items() if k != "Authorization"}
    expected = stock_signature(creds.get_frozen_credentials(), signed["X-Amz-Date"], sent)
    assert auth.endswith("Signature=" + expected)


def test_refreshed_credentials_make_a_new_signer():
    """A role's credentials renew themselves: the next signature uses the new key id and secret."""

    class Rotating:
        def __init__(self) -> None:
            self.values = ReadOnlyCredentials("AKIDOLD", "old-secret", "t1")

        def get_frozen_credentials(self) -> ReadOnlyCredentials:
            return self.values

    creds = Rotating()
    signer = Signer(creds, "bedrock", "us-east-1")
    first = signer.headers("POST", URL, HEADERS, BODY)
    again = signer.headers("POST", URL, HEADERS, BODY)
    assert signer._auth is not None and "AKIDOLD/" in again["Authorization"]
    kept = signer._auth
    creds.values = ReadOnlyCredentials("AKIDNEW", "new-secret", "t2")
    renewed = signer.headers("POST", URL, HEADERS, BODY)
    assert signer._auth is not kept
    assert "Credential=AKIDNEW/" in renewed["Authorization"] and renewed["X-Amz-Security-Token"] == "t2"
    sent = {k: v for k, v in renewed.items() if k != "Authorization"}
    assert renewed["Authorization"].endswith(
        "Signature=" + stock_signature(creds.values, renewed["X-Amz-Date"], sent)
    )
    assert first["X-Amz-Security-Token"] == "t1"


def test_headers_are_case_insensitive_like_httpheaders():
    h = Headers({"X-Amz-Date": "1", "authorization": "old"})
    assert "x-amz-date" in h and "Authorization" in h and h["AUTHORIZATION"] == "old"
    del h["Authorization"]
    h["Authorization"] = "new"
    assert h.get_all("authorization") == ["new"] and h.get("missing") is None
    assert sorted(h) == ["Authorization", "X-Amz-Date"]


def verified(signed: dict[str, str], creds: ReadOnlyCredentials) -> bool:
    """Stock botocore's signature over what was sent equals the one sent (the fake Bedrock's check)."""
    sent = {k: v for k, v in signed.items() if k != "Authorization"}
    return signed["Authorization"].endswith("Signature=" + stock_signature(creds, signed["X-Amz-Date"], sent))


def test_a_new_day_on_the_clock_derives_a_new_signing_key():
    """The clock crosses midnight UTC between two calls: the second is signed with the new day's key."""
    now = [calendar.timegm((2026, 11, 30, 23, 59, 59))]
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    signer = Signer(creds, "bedrock", "us-east-1", clock=lambda: now[0])
    before = signer.headers("POST", URL, HEADERS, BODY)
    assert before["X-Amz-Date"] == "20261130T235959Z" and "/20261130/us-east-1/" in before["Authorization"]
    now[0] += 2
    after = signer.headers("POST", URL, HEADERS, BODY)
    assert after["X-Amz-Date"] == "20261201T000001Z" and "/20261201/us-east-1/" in after["Authorization"]
    frozen = creds.get_frozen_credentials()
    assert verified(before, frozen) and verified(after, frozen)
    # and back within the same second: the timestamp formatted once is the clock's, not a stale one
    now[0] += 0.5
    assert signer.headers("POST", URL, HEADERS, BODY)["X-Amz-Date"] == "20261201T000001Z"


@pytest.mark.parametrize("rotate", ["token", "secret"])
def test_rotated_credentials_sign_with_their_new_values(rotate):
    """A refresh that changes only the session token (or only the secret) is noticed at the next call."""

    class Refreshing:  # what botocore's RefreshableCredentials hands out: new frozen values after a refresh
        def __init__(self) -> None:
            self.values = ReadOnlyCredentials("ASIAROLE", "secret-1", "token-1")

        def get_frozen_credentials(self) -> ReadOnlyCredentials:
            return self.values

    creds = Refreshing()
    signer = Signer(creds, "bedrock", "us-east-1", clock=lambda: calendar.timegm((2026, 11, 30, 12, 0, 0)))
    first = signer.headers("POST", URL, HEADERS, BODY)
    assert verified(first, creds.values) and first["X-Amz-Security-Token"] == "token-1"
    old = creds.values
    creds.values = old._replace(token="token-2") if rotate == "token" else old._replace(secret_key="secret-2")
    second = signer.headers("POST", URL, HEADERS, BODY)
    assert second["X-Amz-Security-Token"] == creds.values.token  # signed: x-amz-security-token
    assert verified(second, creds.values)
    if rotate == "secret":  # a key derived from the old secret would not verify
        assert not verified(second, old)
