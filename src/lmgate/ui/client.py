"""A running proxy's log store, read through its dashboard API (``/ui/api``): what
``lmgate logs --url`` uses in place of a local file. Answers in the ``LogStore`` shapes, so
the CLI prints them the same way; the proxy applies who may see what (a virtual key sees its
own calls only)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import httpx

from ..store.base import Filters, Page

MAX_PAGE = 500  # the API's largest page (query.MAX_LIMIT)


class RemoteStoreError(RuntimeError):
    """The proxy refused or failed; the message says what it answered."""


class RemoteStore:
    """``query``/``get``/``stats``/``totals``/``timeseries`` over HTTP."""

    max_page = MAX_PAGE

    def __init__(self, url: str, key: str | None, *, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=30, transport=transport)

    def __repr__(self) -> str:
        return f"<RemoteStore {self._shown}/ui/api>"

    @property
    def _shown(self) -> str:
        # the URL as a message may show it: a password in it (http://user:pass@host) masked
        from .._secrets import mask_url

        return mask_url(self.url) or self.url

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self._client.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.HTTPError as error:
            from .._secrets import scrub

            raise RemoteStoreError(scrub(f"cannot reach {self._shown}: {error}")) from None
        if response.status_code == 404 and path.startswith("/ui/api/logs/"):
            return None
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise RemoteStoreError(f"{self._shown}{path} answered {response.status_code}: {message}")
        return response.json()

    @staticmethod
    def _params(filters: Filters) -> dict[str, Any]:
        params = {k: v for k, v in asdict(filters).items() if v is not None}
        if filters.since is None and filters.until is None:
            params["range"] = "all"
        return params

    def query(self, filters: Filters = Filters(), page: Page = Page()) -> list[dict[str, Any]]:
        params = {**self._params(filters), "limit": min(page.limit, MAX_PAGE), "offset": page.offset}
        return list(self._get("/ui/api/logs", params)["rows"])

    def get(self, call_id: str) -> dict[str, Any] | None:
        # quoted whole: an id holding '?', '#' or '..' names that id, not another URL
        found = self._get(f"/ui/api/logs/{quote(call_id, safe='')}", {})
        if found is None:
            return None
        row = dict(found["row"])
        row["payload"] = found.get("payload")
        row["trace"] = found.get("trace") or []
        return row

    def stats(self, group_by: str, filters: Filters = Filters()) -> list[dict[str, Any]]:
        return list(self._get("/ui/api/breakdown", {**self._params(filters), "by": group_by})["rows"])

    def totals(self, filters: Filters = Filters()) -> dict[str, Any]:
        return dict(self._get("/ui/api/overview", self._params(filters))["totals"])

    def timeseries(
        self, bucket: str, filters: Filters = Filters(), group_by: str | None = None
    ) -> list[dict[str, Any]]:
        if group_by not in (None, "model"):
            raise RemoteStoreError("the dashboard API splits time series by model only")
        # by model: the overview's tokens chart, whose rows may carry no percentiles (None)
        found = self._get("/ui/api/overview", {**self._params(filters), "bucket": bucket})
        return list(found["tokens_by_model"] if group_by == "model" else found["series"])

    def close(self) -> None:
        self._client.close()


__all__ = ["RemoteStore", "RemoteStoreError"]
