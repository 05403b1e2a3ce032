"""The proxy's routes, one module per kind: ``llm`` (the request flow), ``ops`` (models,
health, metrics), ``admin`` (keys and teams, mounted only with virtual keys). Each module's
``routes(...)`` lists its routes; ``app.create_app`` mounts them.
"""

from __future__ import annotations


def spellings(path: str, *, slash: bool = True) -> list[str]:
    """Every path a route is served under: bare and under ``/v1``, each with and without a
    trailing slash (served as they are: Starlette's slash redirect would build its Location
    from the client's Host header)."""
    return [f"{prefix}{path}{end}" for prefix in ("", "/v1") for end in (("", "/") if slash else ("",))]
