"""lmgate.providers._sigv4: botocore's SigV4 signer with its per-request costs cut gives botocore's signature.

The fake Bedrock (tests/fakes/bedrock.py) checks every signed call end to end with botocore's stock
``SigV4Auth``; these tests pin the parts the fast path changes: the light request and header map,
headers_to_sign built once, the signing key kept per day, the signer re-made when credentials change.
"""

from __future__ import annotations

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
    assert auth._signing_key[0] == "20261201"


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
