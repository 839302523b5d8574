#!/usr/bin/env bash
# Installs the OpenTelemetry Python test client's virtualenv, idempotently,
# and prints its python as the last line of stdout:
#
#   integration/otel-python/install.sh     prints <venv>/bin/python
#
# - the virtualenv is ${OTEL_PYTHON_VENV:-~/.cache/observatory/otel-python},
#   holding the pinned packages of requirements.txt (the official
#   OpenTelemetry SDK and its OTLP gRPC and HTTP exporters); re-installed only
#   when requirements.txt (or the python3 it was made with) changes;
# - Debian's python3-venv when python3 cannot make a virtualenv (with sudo
#   when not root).
# Fast when everything is there: no network access at all.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${OTEL_PYTHON_VENV:-$HOME/.cache/observatory/otel-python}"
log() { printf '[otel-python] %s\n' "$*" >&2; }

python="$(command -v python3 || true)"
[ -n "$python" ] || { log "python3 is missing"; exit 1; }
# The stamp: the requirements and the interpreter the venv was made from.
stamp="$( { cat "$HERE/requirements.txt"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' >/dev/null 2>&1 ||
  [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$stamp" ]; then
  if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing Debian's python3-venv"
    if [ "$(id -u)" -eq 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    elif command -v sudo >/dev/null 2>&1; then
      sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    else
      log "python3 cannot create a virtualenv: install python3-venv (no sudo here, not root)"
      exit 1
    fi
  fi
  log "creating $VENV with $("$python" -V 2>&1) and the packages of requirements.txt"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$python" -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2
  echo "$stamp" >"$VENV/.requirements"
fi

echo "$VENV/bin/python"
