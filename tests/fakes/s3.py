"""A fake S3 on 127.0.0.1 that checks every request's AWS Signature Version 4 with botocore.

It records PUTs like the log receiver (any path: ``/{bucket}/{key}`` in path style) and answers
403 ``SignatureDoesNotMatch`` to a request whose signature, scope or payload hash is not what
botocore computes for the same request with the known secret key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .receiver import LogReceiver, ReceivedRequest

__all__ = ["FakeS3"]


class FakeS3(LogReceiver):
    """S3's PUT Object, path style, verifying SigV4 for one access key."""

    def __init__(self, access_key: str, secret_key: str, region: str = "us-east-1") -> None:
        super().__init__(path="")
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.refused: list[str] = []  # why each refused request was refused

    def signature_problem(self, req: ReceivedRequest) -> str | None:
        """None when the request is signed as botocore signs it; else what is wrong."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        auth_header = req.headers.get("authorization", "")
        scheme, _, rest = auth_header.partition(" ")
        if scheme != "AWS4-HMAC-SHA256":
            return f"not SigV4: {scheme!r}"
        parts = dict(p.strip().split("=", 1) for p in rest.split(","))
        access, date, region, service, terminal = parts["Credential"].split("/")
        if (access, region, service, terminal) != (self.access_key, self.region, "s3", "aws4_request"):
            return f"bad scope {parts['Credential']!r}"
        if req.headers.get("x-amz-content-sha256") != hashlib.sha256(req.body).hexdigest():
            return "payload hash does not match the body"
        signed = parts["SignedHeaders"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return "host and x-amz-date must be signed"
        timestamp = req.headers["x-amz-date"]
        if timestamp[:8] != date:
            return "scope date differs from x-amz-date"
        url = f"http://{req.headers['host']}{req.path}" + (f"?{req.query}" if req.query else "")
        request = AWSRequest(
            method=req.method, url=url, data=req.body, headers={h: req.headers[h] for h in signed}
        )
        request.context["timestamp"] = timestamp
        auth = S3SigV4Auth(Credentials(self.access_key, self.secret_key), "s3", self.region)
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        if expected != parts["Signature"]:
            return "SignatureDoesNotMatch"
        return None

    def _receive(self, req: ReceivedRequest) -> tuple[int, dict[str, str]]:
        problem = self.signature_problem(req)
        if problem is not None:
            self.refused.append(problem)
            return 403, {}
        return super()._receive(req)

    def objects(self) -> dict[str, Any]:
        """Stored objects by path (``/bucket/key``): their records."""
        return {r.path: r.records for r in self.requests}
