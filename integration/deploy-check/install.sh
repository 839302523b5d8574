#!/usr/bin/env bash
# Installs what the deployment checks need, idempotently, and prints where:
#
#   integration/deploy-check/install.sh     prints DEPLOY_CHECK_PYTHON=<venv python>
#
# - a Python virtualenv under $OBSERVATORY_TOOLS_DIR (default
#   ~/.cache/llm-observatory/tools)/deploy-check with the pinned packages of
#   requirements.txt: kubernetes-validate (Kubernetes' own OpenAPI schemas,
#   offline), botocore (the ECS API model), jsonschema, check-jsonschema (the
#   Compose specification's schema), cloudcoil-models-keda (KEDA's CRD types);
#   re-installed only when requirements.txt changes;
# - Debian's docker-compose (v1, Python), whose `config` validates a compose
#   file without a Docker engine;
# - kubectl (renders the kustomize overlays): installed from apt when a
#   current one is offered there, else the checks fail saying so.
# Fast when everything is there: no network access at all.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="${OBSERVATORY_TOOLS_DIR:-$HOME/.cache/llm-observatory/tools}"
VENV="$TOOLS/deploy-check"
log() { printf '[deploy-check] %s\n' "$*" >&2; }

stamp="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$stamp" ]; then
  python="$(command -v python3 || true)"
  [ -n "$python" ] || { log "python3 is missing"; exit 1; }
  if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing Debian's python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  fi
  log "creating $VENV with $(basename "$python") and the packages of requirements.txt"
  rm -rf "$VENV"
  "$python" -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2
  echo "$stamp" >"$VENV/.requirements"
fi

if ! command -v docker-compose >/dev/null 2>&1; then
  log "installing Debian's docker-compose (validates compose files without an engine)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >&2
fi
if ! command -v kubectl >/dev/null 2>&1; then
  # Debian's own kubernetes-client is kubectl 1.20, whose kustomize predates
  # the components our overlays use: only a current kubectl will do (the
  # `kubectl` package of Google's Cloud SDK apt source, where configured).
  log "installing kubectl (apt package kubectl)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubectl >&2 ||
    log "kubectl is missing and apt has no current one: the kustomize checks will fail (install kubectl 1.21 or newer)"
fi

echo "DEPLOY_CHECK_PYTHON=$VENV/bin/python"
