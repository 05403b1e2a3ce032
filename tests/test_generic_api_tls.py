"""The generic API logger loads a CA bundle only when TLS can happen (an https:// endpoint, or a
proxy in the environment): for plain http:// it costs no certificate store (~1.3 MiB of a proxy
worker's memory). Checked on the real path: records delivered to a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from fakes import LogReceiver

from lmgate.loggers.http_exporter import HTTPExporter

# a fresh interpreter, which counts the CA stores loaded into any SSL context (certifi's bundle,
# SSL_CERT_FILE, or the system's): a wrapper that counts and calls through
_PROGRAM = """
import json, os, ssl, sys

loads = []
for name in ("load_verify_locations", "load_default_certs", "set_default_verify_paths"):
    real = getattr(ssl.SSLContext, name)
    def counted(self, *args, _real=real, _name=name, **kwargs):
        loads.append(_name)
        return _real(self, *args, **kwargs)
    setattr(ssl.SSLContext, name, counted)

import lmgate
from lmgate.loggers import GenericAPILogger
from lmgate.loggers.http_exporter import HTTPExporter

logger = GenericAPILogger(endpoint=os.environ["ENDPOINT"], batch_size=1, spool_dir=os.environ["SPOOL"])
lmgate.callbacks = [logger]
lmgate.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], mock_response="ok")
flushed = logger.flush(20)
print(json.dumps({
    "flushed": flushed,
    "delivered": logger.stats()["delivered"],
    "ca_stores_loaded": len(loads),
    "ca_bundles_loaded": getattr(HTTPExporter, "ca_bundles_loaded", None),
}))
logger.close(5)
"""


def _run(endpoint: str, tmp_path: Any, **env: str) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    environ.update(ENDPOINT=endpoint, SPOOL=str(tmp_path / "spool"), **env)
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, env=environ, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_http_endpoint_delivers_without_loading_a_ca_bundle(log_receiver: LogReceiver, tmp_path) -> None:
    got = _run(log_receiver.url, tmp_path)
    assert got["flushed"] and got["delivered"] == 1
    assert len(log_receiver.records) == 1
    assert got["ca_stores_loaded"] == 0
    assert got["ca_bundles_loaded"] == 0


def test_a_proxy_in_the_environment_loads_the_ca_bundle(log_receiver: LogReceiver, tmp_path) -> None:
    # NO_PROXY keeps the request itself direct; the proxy setting alone may mean TLS to a proxy
    got = _run(log_receiver.url, tmp_path, HTTPS_PROXY="https://127.0.0.1:9", NO_PROXY="127.0.0.1")
    assert got["flushed"] and got["delivered"] == 1
    assert got["ca_stores_loaded"] >= 1
    assert got["ca_bundles_loaded"] == 1


def test_https_endpoint_loads_the_ca_bundle(monkeypatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    before = HTTPExporter.ca_bundles_loaded
    plain = HTTPExporter("http://127.0.0.1:9/log", {})
    plain.prepare()
    assert HTTPExporter.ca_bundles_loaded == before
    secure = HTTPExporter("https://127.0.0.1:9/log", {})
    try:
        secure.prepare()
        assert HTTPExporter.ca_bundles_loaded == before + 1
    finally:
        plain.close()
        secure.close()
