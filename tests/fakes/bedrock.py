"""A fake Amazon Bedrock Runtime: a real HTTP/1.1 server on 127.0.0.1 that checks SigV4 and speaks event-stream.

Written from the API reference, the event-stream specification and the AWS SDK sources:

* https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html —
  ``POST /model/{modelId}/converse``: ``messages`` (``role`` user|assistant, alternating, the first a user
  turn; ``content`` blocks holding exactly one of ``text``, ``image`` {``format``, ``source`` {``bytes`` |
  ``s3Location``}}, ``document``, ``toolUse`` {``toolUseId``, ``name``, ``input``}, ``toolResult``
  {``toolUseId``, ``content``, ``status``}, ``cachePoint`` {``type``}, ``reasoningContent``, …), ``system``,
  ``inferenceConfig`` {``maxTokens``, ``temperature``, ``topP``, ``stopSequences``}, ``toolConfig``
  {``tools`` [{``toolSpec`` {``name``, ``description``, ``inputSchema`` {``json``}}} | {``cachePoint``}],
  ``toolChoice`` {``auto``|``any``|``tool``}}, ``guardrailConfig``, ``additionalModelRequestFields``,
  ``additionalModelResponseFieldPaths``, ``performanceConfig``, ``promptVariables``, ``requestMetadata``;
  the answer ``{"output": {"message": …}, "stopReason", "usage" {``inputTokens``, ``outputTokens``,
  ``totalTokens``, ``cacheReadInputTokens``, ``cacheWriteInputTokens``}, "metrics" {``latencyMs``}}``;
* https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html and
  API_runtime_ConverseStreamOutput.html — ``POST /model/{modelId}/converse-stream`` answers
  ``application/vnd.amazon.eventstream``: one message per ``messageStart``, ``contentBlockStart``
  (``start.toolUse``), ``contentBlockDelta`` (``delta.text`` | ``delta.toolUse.input`` (partial JSON) |
  ``delta.reasoningContent``), ``contentBlockStop``, ``messageStop`` (``stopReason``) and ``metadata``
  (``usage``, ``metrics``) event, in that order; errors mid-stream are ``:message-type: exception``
  messages named by ``:exception-type`` (``throttlingException``, ``validationException``,
  ``modelStreamErrorException``, ``internalServerException``, ``serviceUnavailableException``);
* the event-stream framing (smithy-lang/smithy ``docs/source-2.0/aws/amazon-eventstream.rst``;
  boto/botocore ``botocore/eventstream.py``, which lmgate decodes with): a message is
  ``total length (u32) | headers length (u32) | prelude CRC32 | headers | payload | message CRC32``, big
  endian; a header is ``name length (u8) | name | type (u8, 7 = string) | value length (u16) | value``;
  every event carries ``:event-type``, ``:content-type: application/json`` and ``:message-type: event``;
* https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html — ``POST
  /model/{modelId}/invoke`` with the model's own body: Titan Text Embeddings (``{"inputText", "dimensions",
  "normalize"}`` → ``{"embedding", "inputTextTokenCount"}``) and Cohere Embed (``{"texts", "input_type"}`` →
  ``{"embeddings", "id", "response_type", "texts"}``);
* errors (CommonErrors and each action's Errors section; botocore's rest-json parser): the status, the
  ``x-amzn-ErrorType`` header (``ThrottlingException:http://internal.amazon.com/coral/…``) and the body
  ``{"message": …}``; a bad signature is 403 ``InvalidSignatureException``, an unknown key 403
  ``UnrecognizedClientException``;
* https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html — SigV4:
  ``Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/bedrock/aws4_request,
  SignedHeaders=…, Signature=…``, ``X-Amz-Date``, ``X-Amz-Security-Token`` for session credentials. The fake
  recomputes the signature with botocore's ``SigV4Auth`` from the secret it knows for the key id, over the
  request exactly as received (method, raw path, signed headers, body).
"""

from __future__ import annotations

import binascii
import calendar
import collections
import json
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .provider import DEFAULT_TEXT, BackgroundHTTPServer, BaseHandler, RecordedRequest, fake_embedding

__all__ = ["BedrockReply", "FakeBedrock", "FakeSts", "encode_event"]

ACCESS_KEY_ID = "AKIAFAKEBEDROCK00001"
SECRET_ACCESS_KEY = "fake/Secret+Access/Key0123456789abcdefXYZ"

_CONVERSE_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                    "additionalModelRequestFields", "additionalModelResponseFieldPaths", "performanceConfig",
                    "promptVariables", "requestMetadata"}  # fmt: skip
_BLOCK_KINDS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "cachePoint",
                "reasoningContent", "citationsContent"}  # fmt: skip
_SYSTEM_KINDS = {"text", "guardContent", "cachePoint"}


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("!B", len(raw_name)) + raw_name + b"\x07" + struct.pack("!H", len(raw_value)) + raw_value
    )


def encode_event(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message (string headers only, as Bedrock sends), per the framing spec."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack("!II", total, len(head))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + head + payload
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


def event(kind: str, obj: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_event(headers, json.dumps(obj).encode())


def exception_event(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return encode_event(headers, json.dumps({"message": message}).encode())


@dataclass
class BedrockReply:
    """A scripted answer, consumed FIFO. ``stop_reason`` is Bedrock's vocabulary (end_turn, tool_use, …)."""

    status: int = 200
    json: Any = None  # whole body override
    text: str | None = DEFAULT_TEXT
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # [{"name", "input", "id"?}]
    stop_reason: str | None = None  # default: tool_use with tool calls, else end_turn
    usage: dict[str, int] = field(default_factory=lambda: {"inputTokens": 7, "outputTokens": 5})
    error_type: str | None = None  # x-amzn-ErrorType for an error status
    error_message: str | None = None
    stream_exception: tuple[str, str] | None = None  # (:exception-type, message) sent after the content
    chunk_size: int = 3
    headers: dict[str, str] = field(default_factory=dict)
    piece_size: int | None = None  # write the stream in pieces of this many bytes (frames split across reads)
    corrupt_frame: int | None = None  # flip a payload byte of this frame (its message CRC no longer matches)
    cut_after_frames: int | None = None  # drop the connection after this many frames


class _Handler(BaseHandler):
    def dispatch(self) -> None:
        body = self.read_body()
        url = urlsplit(self.path)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = ...
        rec = RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=self.header_dict(),
            json=None if parsed is ... else parsed,
            raw=body,
        )
        owner: FakeBedrock = self.server.owner
        owner._record(rec, self.path)
        owner._handle(self, rec, self.path, parsed is not ...)


class FakeBedrock(BackgroundHTTPServer):
    """Fake Bedrock Runtime. Signatures are checked against ``credentials`` (key id → secret)."""

    handler_class = _Handler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self.raw_targets: list[str] = []  # the request targets as sent (percent-escapes kept)
        self._queue: collections.deque[BedrockReply] = collections.deque()
        self.credentials: dict[str, str] = {ACCESS_KEY_ID: SECRET_ACCESS_KEY}
        self.expect_token: str | None = None  # the X-Amz-Security-Token session credentials must carry
        self.region = "us-east-1"
        self.signatures_checked = 0

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    def enqueue(self, *replies: BedrockReply) -> None:
        with self._cond:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._cond:
            self._requests.clear()
            self.raw_targets.clear()
            self._queue.clear()
            self.credentials = {ACCESS_KEY_ID: SECRET_ACCESS_KEY}
            self.expect_token = None
            self.region = "us-east-1"

    def _record(self, rec: RecordedRequest, target: str) -> None:
        with self._cond:
            self._requests.append(rec)
            self.raw_targets.append(target)
            self._cond.notify_all()

    def _next(self) -> BedrockReply:
        with self._cond:
            return self._queue.popleft() if self._queue else BedrockReply()

    # -- errors ----------------------------------------------------------------------------------
    @staticmethod
    def _error(
        h: BaseHandler, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        extra = {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                 "x-amzn-RequestId": "fake-request-id", **(headers or {})}  # fmt: skip
        h.send_json(status, {"message": message}, extra)

    # -- SigV4 -------------------------------------------------------------------------------------
    def check_signature(self, rec: RecordedRequest, target: str) -> tuple[str, str] | None:
        """None when the request is signed right, else (error type, message) as Bedrock would answer."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        auth = rec.headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "MissingAuthenticationTokenException", "Missing Authentication Token"
        fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
        key_id, date, region, service, terminal = fields["Credential"].split("/")
        secret = self.credentials.get(key_id)
        if secret is None:
            return "UnrecognizedClientException", "The security token included in the request is invalid."
        if (region, service, terminal) != (self.region, "bedrock", "aws4_request"):
            return (
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region/service: {region}/{service}",
            )
        amz_date = rec.headers.get("x-amz-date", "")
        if not amz_date.startswith(date):
            return (
                "InvalidSignatureException",
                "Date in Credential scope does not match the X-Amz-Date header",
            )
        skew = abs(time.time() - calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")))
        if skew > 15 * 60:
            return "InvalidSignatureException", "Signature expired"
        token = rec.headers.get("x-amz-security-token")
        if self.expect_token is not None and token != self.expect_token:
            return "UnrecognizedClientException", "The security token included in the request is invalid."
        signed = fields["SignedHeaders"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return "InvalidSignatureException", "host and x-amz-date must be signed"
        headers = {name: rec.headers[name] for name in signed if name in rec.headers}
        request = AWSRequest(
            method=rec.method, url=f"http://{rec.headers['host']}{target}", data=rec.raw, headers=headers
        )
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(key_id, secret, token), "bedrock", region)
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        self.signatures_checked += 1
        if expected != fields["Signature"]:
            return (
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
            )
        return None

    # -- validation ------------------------------------------------------------------------------
    @staticmethod
    def _invalid(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "The request body is not a JSON object"
        unknown = set(body) - _CONVERSE_FIELDS
        if unknown:
            return f"Malformed input request: extraneous key [{sorted(unknown)[0]}] is not permitted"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "A conversation must start with a user message."
        for i, msg in enumerate(messages):
            if msg.get("role") != ("user" if i % 2 == 0 else "assistant"):
                return "A conversation must alternate between user and assistant roles."
            for block in msg.get("content") or []:
                if len(block) != 1 or next(iter(block)) not in _BLOCK_KINDS:
                    return f"Malformed content block: {sorted(block)}"
                if "image" in block:
                    image = block["image"]
                    if image.get("format") not in ("png", "jpeg", "gif", "webp") or "source" not in image:
                        return "Invalid image block"
        for block in body.get("system") or []:
            if len(block) != 1 or next(iter(block)) not in _SYSTEM_KINDS:
                return f"Malformed system block: {sorted(block)}"
        for tool in (body.get("toolConfig") or {}).get("tools") or []:
            if "toolSpec" in tool and "json" not in (tool["toolSpec"].get("inputSchema") or {}):
                return "toolSpec.inputSchema.json is required"
        return None

    # -- answers ---------------------------------------------------------------------------------
    def _handle(self, h: BaseHandler, rec: RecordedRequest, target: str, json_ok: bool) -> None:
        bad_auth = self.check_signature(rec, target)
        if bad_auth is not None:
            self._error(h, 403, *bad_auth)
            return
        parts = rec.path.split("/")
        if rec.method != "POST" or len(parts) != 4 or parts[1] != "model":
            self._error(h, 404, "UnknownOperationException", f"no route for {rec.method} {rec.path}")
            return
        model, action = unquote(parts[2]), parts[3]
        reply = self._next()
        if reply.status >= 400:
            self._error(
                h,
                reply.status,
                reply.error_type or "ValidationException",
                reply.error_message or "error",
                reply.headers,
            )
            return
        if not json_ok:
            self._error(h, 400, "SerializationException", "Unexpected character in the request body")
            return
        if reply.json is not None:
            h.send_json(200, reply.json, reply.headers)
            return
        if action == "invoke":
            self._invoke(h, model, rec.json, reply)
            return
        problem = self._invalid(rec.json)
        if problem is not None:
            self._error(h, 400, "ValidationException", problem)
            return
        if action == "converse":
            h.send_json(200, self._response(reply), {"x-amzn-RequestId": "fake-request-id", **reply.headers})
        elif action == "converse-stream":
            h.start_chunked(
                200,
                "application/vnd.amazon.eventstream",
                {"x-amzn-RequestId": "fake-request-id", **reply.headers},
            )
            try:
                frames = self._events(reply)
                if reply.corrupt_frame is not None:
                    bad = bytearray(frames[reply.corrupt_frame])
                    bad[-6] ^= 0xFF
                    frames[reply.corrupt_frame] = bytes(bad)
                if reply.cut_after_frames is not None:
                    for frame in frames[: reply.cut_after_frames]:
                        h.write_chunk(frame)
                    h.cut()
                    return
                if reply.piece_size:
                    data = b"".join(frames)
                    frames = [data[i : i + reply.piece_size] for i in range(0, len(data), reply.piece_size)]
                for frame in frames:
                    h.write_chunk(frame)
                h.end_chunked()
            except OSError:
                h.close_connection = True
        else:
            self._error(h, 404, "UnknownOperationException", f"unknown action {action}")

    def _invoke(self, h: BaseHandler, model: str, body: dict[str, Any], reply: BedrockReply) -> None:
        if model.startswith("amazon.titan-embed"):
            if set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"} or not isinstance(
                body.get("inputText"), str
            ):
                self._error(
                    h,
                    400,
                    "ValidationException",
                    "Malformed input request, please reformat your input and try again.",
                )
                return
            vector = fake_embedding(body["inputText"], int(body.get("dimensions") or 4))
            h.send_json(200, {"embedding": vector, "inputTextTokenCount": len(body["inputText"].split())})
        elif model.startswith("cohere.embed"):
            if not isinstance(body.get("texts"), list) or "input_type" not in body:
                self._error(
                    h,
                    400,
                    "ValidationException",
                    "Malformed input request: #: required key [input_type] not found",
                )
                return
            vectors = [fake_embedding(t) for t in body["texts"]]
            h.send_json(
                200,
                {
                    "embeddings": vectors,
                    "id": "fake-embed-id",
                    "response_type": "embeddings_floats",
                    "texts": body["texts"],
                },
            )
        else:
            self._error(h, 400, "ValidationException", f"The provided model identifier {model} is invalid.")

    @staticmethod
    def _usage(reply: BedrockReply) -> dict[str, int]:
        u = dict(reply.usage)
        u["totalTokens"] = sum(
            u.get(k, 0)
            for k in ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
        )
        return u

    @staticmethod
    def _stop(reply: BedrockReply) -> str:
        return reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")

    def _response(self, reply: BedrockReply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.reasoning:
            content.append(
                {"reasoningContent": {"reasoningText": {"text": reply.reasoning, "signature": "sig"}}}
            )
        if reply.text is not None:
            content.append({"text": reply.text})
        for i, call in enumerate(reply.tool_calls or ()):
            content.append(
                {
                    "toolUse": {
                        "toolUseId": call.get("id") or f"tooluse_{i}",
                        "name": call["name"],
                        "input": call.get("input") or {},
                    }
                }
            )
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": self._stop(reply),
            "usage": self._usage(reply),
            "metrics": {"latencyMs": 42},
        }

    def _events(self, reply: BedrockReply) -> list[bytes]:
        out = [event("messageStart", {"role": "assistant"})]
        index = 0
        if reply.reasoning:
            out.append(
                event(
                    "contentBlockDelta",
                    {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": reply.reasoning}}},
                )
            )
            out.append(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        if reply.text is not None:
            size = max(1, reply.chunk_size)
            for start in range(0, len(reply.text), size):
                out.append(
                    event(
                        "contentBlockDelta",
                        {"contentBlockIndex": index, "delta": {"text": reply.text[start : start + size]}},
                    )
                )
            out.append(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for i, call in enumerate(reply.tool_calls or ()):
            tool = {"toolUseId": call.get("id") or f"tooluse_{i}", "name": call["name"]}
            out.append(event("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": tool}}))
            args = json.dumps(call.get("input") or {})
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                out.append(
                    event(
                        "contentBlockDelta",
                        {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}},
                    )
                )
            out.append(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        if reply.stream_exception is not None:
            out.append(exception_event(*reply.stream_exception))
            return out
        out.append(event("messageStop", {"stopReason": self._stop(reply)}))
        out.append(event("metadata", {"usage": self._usage(reply), "metrics": {"latencyMs": 42}}))
        return out


# ---------------------------------------------------------------------------------------------------
# STS, for the credential chain's assumed roles
# ---------------------------------------------------------------------------------------------------

ROLE_KEY_ID = "ASIAFAKEROLE00000001"
ROLE_SECRET = "role/Secret+Key0123456789abcdefghijklmn"
ROLE_TOKEN = "IQoJb3JpZ2luX2VjFakeRoleSessionToken0123456789"


class _StsHandler(BaseHandler):
    def dispatch(self) -> None:
        body = self.read_body()
        form = dict(parse_qsl(body.decode()))
        owner: FakeSts = self.server.owner
        with owner._lock:
            owner.calls.append(form)
        if form.get("Action") != "AssumeRole":
            self.send_bytes(
                400, b"<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>", "text/xml"
            )
            return
        expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        xml = f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>{ROLE_KEY_ID}</AccessKeyId>
      <SecretAccessKey>{ROLE_SECRET}</SecretAccessKey>
      <SessionToken>{ROLE_TOKEN}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE:{form.get("RoleSessionName", "")}</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/bedrock-caller/{form.get("RoleSessionName", "")}</Arn>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>fake-sts-request</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""
        self.send_bytes(200, xml.encode(), "text/xml")


class FakeSts(BackgroundHTTPServer):
    """Fake AWS STS answering ``AssumeRole`` (Query protocol: a form body, an XML answer, per
    https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html) with fixed temporary
    credentials; botocore reaches it through ``AWS_ENDPOINT_URL_STS``."""

    handler_class = _StsHandler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._lock = threading.Lock()
        self.calls: list[dict[str, str]] = []
