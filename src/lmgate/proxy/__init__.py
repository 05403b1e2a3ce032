"""``lmgate serve``: an OpenAI-compatible proxy configured by a LiteLLM-style YAML file.

Modules, one job each: ``config`` (YAML → frozen config, errors that name the key),
``loading`` (dotted paths and callback names → objects, settings applied to ``lmgate``),
``router`` (deployment groups, spreading and failover), ``hooks`` (the proxy-only
``CustomLogger`` hooks), ``errors`` (OpenAI-style error bodies), ``metrics`` (Prometheus
text), ``app`` (the ASGI routes) and ``server`` (uvicorn). Nothing here is imported by
``import lmgate``.
"""
