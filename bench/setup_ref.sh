#!/usr/bin/env bash
# Creates bench/.venv-ref: the reference implementation (LiteLLM, with the proxy extra) in its own
# venv so it never touches the project venv. Idempotent: a finished venv is left as it is.
#
# litellm==1.109.1 asks for certifi>=2026.10.19 and (proxy extra) litellm-proxy-extras==0.4.113,
# releases the package index does not serve (its newest are 2026.10.18 and 0.4.110), so pip cannot
# resolve `litellm[proxy]==1.109.1`.  We install its requirements (core + proxy extra) with those two
# constraints dropped (pip takes the newest served), then the wheel itself with --no-deps.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-ref"
LITELLM_VERSION="${LITELLM_VERSION:-1.109.1}"
STAMP="$VENV/.installed-litellm-$LITELLM_VERSION"
PYTHON="${PYTHON:-python3}"

if [ -f "$STAMP" ]; then
  echo "reference venv ready: $VENV (litellm $LITELLM_VERSION)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 1. the wheel alone, so we can read its declared requirements
"${PIP[@]}" download -q --no-deps -d "$WORK" "litellm==$LITELLM_VERSION"
WHEEL="$(ls "$WORK"/litellm-*.whl)"

# 2. its requirements (core + the "proxy" extra) with the two troublesome pins relaxed
"$VENV/bin/python" - "$WHEEL" > "$WORK/requirements.txt" <<'PY'
import re
import sys
import zipfile
from email.parser import Parser

RELAX = {"certifi", "litellm-proxy-extras"}
with zipfile.ZipFile(sys.argv[1]) as zf:
    name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(zf.read(name).decode())
for req in meta.get_all("Requires-Dist") or []:
    spec, _, marker = req.partition(";")
    marker = marker.strip()
    # keep the core requirements and the proxy extra; drop other extras
    if "extra ==" in marker and '"proxy"' not in marker and "'proxy'" not in marker:
        continue
    marker = re.sub(r"\s*(and\s+)?extra\s*==\s*['\"]proxy['\"]\s*(and\s+)?", " ", marker).strip()
    spec = spec.strip()
    pkg = re.split(r"[\s<>=!~\[(]", spec, maxsplit=1)[0]
    if pkg.lower().replace("_", "-") in RELAX:
        # their exact pins name releases the index does not serve: take whatever it has
        spec = pkg
    print(spec + (f"; {marker}" if marker else ""))
PY
echo "requirements (pins relaxed: certifi, litellm-proxy-extras):"
sed 's/^/  /' "$WORK/requirements.txt"

"${PIP[@]}" install -q -r "$WORK/requirements.txt"
"${PIP[@]}" install -q --no-deps "$WHEEL"
# matplotlib draws docs/benchmarks.png; it lives here so the project venv stays lean
"${PIP[@]}" install -q matplotlib

"$VENV/bin/python" -c "import litellm, litellm.proxy.proxy_server; print('litellm', litellm.__name__, 'ok')" \
  </dev/null >/dev/null 2>&1 || { echo "reference venv: litellm import check failed" >&2; exit 1; }
"${PIP[@]}" freeze > "$VENV/freeze.txt"  # what was actually installed, for the report
touch "$STAMP"
echo "reference venv ready: $VENV (litellm $LITELLM_VERSION)"
