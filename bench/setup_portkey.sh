#!/usr/bin/env bash
# Installs the Portkey gateway (npm @portkey-ai/gateway) into bench/.portkey/ (git-ignored) for the forward
# scenario. Idempotent: an installed gateway of the wanted version is left as it is. Needs node and npm.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="$HERE/.portkey"
VERSION="${PORTKEY_VERSION:-1.15.2}"
PKG="$DIR/node_modules/@portkey-ai/gateway/package.json"

if [ -f "$PKG" ] && grep -q "\"version\": \"$VERSION\"" "$PKG"; then
  echo "portkey gateway ready: $DIR ($VERSION)"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "npm not found: install node and npm first" >&2; exit 1; }
mkdir -p "$DIR"
# a package.json of our own, so npm installs here and not in a parent project
[ -f "$DIR/package.json" ] || echo '{"name": "lmgate-bench-portkey", "private": true}' > "$DIR/package.json"
# --ignore-scripts: the gateway's postinstall (patch-package) is not needed to run its built server
(cd "$DIR" && npm install --no-audit --no-fund --ignore-scripts "@portkey-ai/gateway@$VERSION" >/dev/null)
echo "portkey gateway ready: $DIR ($VERSION)"
