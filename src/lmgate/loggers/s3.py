"""``s3``: standard logging payloads as objects in an S3 bucket (or any S3-compatible store).

    lmgate.callbacks = ["s3"]
    # with litellm_settings.s3_callback_params (the reference's names) or callback_settings.s3:
    #   s3_bucket_name, s3_region_name, s3_path, s3_endpoint_url,
    #   s3_aws_access_key_id, s3_aws_secret_access_key, s3_aws_session_token

One object per batch: ``s3://{bucket}/{s3_path}/{YYYY-MM-DD}/{batch key}.ndjson``, one standard
logging payload per line (``application/x-ndjson``). The date is the first record's start day
(UTC) and the batch key is the same on every retry, so a retried PUT overwrites its own object
instead of adding a copy. Requests are signed with AWS Signature Version 4 by ``botocore`` (the
``s3`` extra); credentials are the given ones, else botocore's usual chain (environment,
profile, instance role), looked up when the logger is made; the region is ``s3_region_name``,
else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else us-east-1. Batching, retries, the spool and
the counts are the batch processor's.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from .._retry import retry_after_seconds
from .._secrets import remember_secret, url_origin
from ._env import LoggerConfigError
from .batch import BatchLogger
from .exporter import DELIVERED, Batch, Outcome
from .http_exporter import DEFAULT_TIMEOUT_S

NAMES = ("s3", "s3_v2")
# the reference's s3_callback_params names lmgate reads
PARAMS = (
    "s3_bucket_name",
    "s3_region_name",
    "s3_path",
    "s3_endpoint_url",
    "s3_aws_access_key_id",
    "s3_aws_secret_access_key",
    "s3_aws_session_token",
    "s3_flush_interval",
    "s3_batch_size",
)
# the reference's names that change nothing here (TLS is the endpoint URL's scheme)
IGNORED_PARAMS = (
    "s3_api_version",
    "s3_use_ssl",
    "s3_verify",
    "s3_config",
    "s3_use_team_prefix",
    "s3_use_key_prefix",
    "s3_strip_base64_files",
)
DEFAULT_REGION = "us-east-1"


def classify_s3(status: int, retry_after: str | None = None) -> Outcome:
    """2xx delivered; 408, 429 and 5xx (S3's SlowDown is a 503) retried; anything else (a wrong
    bucket, refused credentials) dropped: resending the same object cannot fix it."""
    if 200 <= status < 300:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return Outcome(
            "retry",
            f"http_{status}",
            retry_after_seconds({"retry-after": retry_after}) if retry_after else None,
        )
    return Outcome("drop", f"http_{status}")


class S3Exporter:
    """PUTs each batch as one ndjson object, signed with SigV4 (``botocore``)."""

    def __init__(
        self,
        bucket: str,
        *,
        region: str = DEFAULT_REGION,
        path: str = "",
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: Any = None,
    ) -> None:
        if not bucket:
            raise LoggerConfigError("s3: s3_bucket_name is required")
        if bool(access_key_id) != bool(secret_access_key):
            raise LoggerConfigError(
                "s3: give both s3_aws_access_key_id and s3_aws_secret_access_key, or neither"
            )
        self.bucket = bucket
        self.region = region
        self.path = path.strip("/")
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.timeout = timeout
        self._transport = transport
        self._given = (access_key_id, secret_access_key, session_token)
        remember_secret(secret_access_key)
        remember_secret(session_token)
        self._credentials_obj: Any = None
        self._client_obj: Any = None
        self._lock = threading.Lock()
        self._credentials()  # missing credentials are a config error now, not a drop at the first batch

    def __repr__(self) -> str:
        where = url_origin(self.endpoint_url) if self.endpoint_url else "aws"
        return f"<S3Exporter s3://{self.bucket}/{self.path} {where}>"

    def object_key(self, batch: Batch) -> str:
        """Where the batch goes: the prefix, the first record's UTC day, the batch key."""
        started = time.time()
        try:
            first = orjson.loads(batch.records[0])
            started = float(first.get("startTime") or started)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, IndexError):
            pass
        day = time.strftime("%Y-%m-%d", time.gmtime(started))
        name = f"{day}/{batch.key}.ndjson"
        return f"{self.path}/{name}" if self.path else name

    def url(self, key: str) -> str:
        quoted = quote(key, safe="/~")
        if self.endpoint_url:  # path style: what S3-compatible stores (MinIO, R2, ...) accept
            return f"{self.endpoint_url}/{self.bucket}/{quoted}"
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{quoted}"

    def _credentials(self) -> Any:
        if self._credentials_obj is None:
            from botocore.credentials import Credentials

            access, secret, token = self._given
            if access:
                self._credentials_obj = Credentials(access, secret, token)
            else:
                import botocore.session

                found = botocore.session.get_session().get_credentials()
                if found is None:
                    raise LoggerConfigError(
                        "s3: no AWS credentials: set s3_aws_access_key_id and s3_aws_secret_access_key, "
                        "or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or an AWS profile"
                    )
                self._credentials_obj = found
        return self._credentials_obj

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                import httpx

                from .._http import timeout as make_timeout

                self._client_obj = httpx.Client(
                    timeout=make_timeout(self.timeout), transport=self._transport, follow_redirects=False
                )
            return self._client_obj

    def signed_headers(self, url: str, body: bytes) -> dict[str, str]:
        """The headers of a SigV4-signed PUT of ``body`` to ``url`` (credentials refreshed if temporary)."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        frozen = self._credentials().get_frozen_credentials()
        request = AWSRequest(
            method="PUT", url=url, data=body, headers={"Content-Type": "application/x-ndjson"}
        )
        S3SigV4Auth(frozen, "s3", self.region).add_auth(request)
        return dict(request.headers.items())

    def export(self, batch: Batch) -> Outcome:
        import httpx

        body = b"\n".join(batch.records) + b"\n"
        url = self.url(self.object_key(batch))
        headers = self.signed_headers(url, body)
        try:
            response = self._client().put(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome("retry", "timeout")
        except httpx.TransportError:
            return Outcome("retry", "connection_error")
        return classify_s3(response.status_code, response.headers.get("retry-after"))

    def close(self) -> None:
        with self._lock:
            client, self._client_obj = self._client_obj, None
        if client is not None:
            client.close()


class S3Logger(BatchLogger):
    """Batches to S3; takes the reference's ``s3_*`` names and the batch logger's settings."""

    def __init__(self, *, transport: Any = None, **params: Any) -> None:
        known = set(PARAMS) | set(IGNORED_PARAMS)
        s3 = {k: params.pop(k) for k in list(params) if k in known}
        unknown = [k for k in params if k.startswith("s3_")]
        if unknown:
            import difflib

            guess = difflib.get_close_matches(unknown[0], PARAMS, n=1)
            hint = f"did you mean {guess[0]!r}?" if guess else f"known: {', '.join(PARAMS)}"
            raise LoggerConfigError(f"s3: unknown setting {unknown[0]!r}; {hint}")
        exporter = S3Exporter(
            str(s3.get("s3_bucket_name") or ""),
            region=str(
                s3.get("s3_region_name")
                or os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION")
                or DEFAULT_REGION
            ),
            path=str(s3.get("s3_path") or ""),
            endpoint_url=s3.get("s3_endpoint_url"),
            access_key_id=s3.get("s3_aws_access_key_id"),
            secret_access_key=s3.get("s3_aws_secret_access_key"),
            session_token=s3.get("s3_aws_session_token"),
            transport=transport,
        )
        if s3.get("s3_flush_interval") is not None:
            params.setdefault("flush_interval", s3["s3_flush_interval"])
        if s3.get("s3_batch_size") is not None:
            params.setdefault("batch_size", s3["s3_batch_size"])
        params.setdefault("name", "s3")
        super().__init__(exporter, **params)


if TYPE_CHECKING:
    from ..settings import Settings


def logger_for_name(name: str, settings: Settings | None = None) -> S3Logger | None:
    """``"s3"`` in a callback list, configured by ``callback_settings.s3`` of ``settings`` (default:
    the module's; the proxy puts ``litellm_settings.s3_callback_params`` there), else by its
    ``s3_callback_params`` (``lmgate.s3_callback_params = {...}``, as the reference's library)."""
    if name not in NAMES:
        return None
    from ..settings import DEFAULT

    settings = settings or DEFAULT
    callback_settings = settings.callback_settings or {}
    # callback_settings.s3 (lmgate's place), else s3_callback_params (the reference's library setting)
    entry = callback_settings.get(name) or callback_settings.get("s3") or settings.s3_callback_params or {}
    options = {k: v for k, v in dict(entry).items() if k != "callback_type"}
    return S3Logger(**options)


__all__ = ["S3Exporter", "S3Logger", "classify_s3", "logger_for_name"]
