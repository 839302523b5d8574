#!/usr/bin/env bash
# Runs the whole test suite against the real services of the local stack.
#
#   integration/test.sh [extra cargo-nextest arguments]
#
# Starts whatever of the stack is missing (integration/stack.sh up), builds
# the binaries the end-to-end tests start as processes, then runs every unit,
# integration and doc test. Installs cargo-nextest when it is missing, and
# the deployment checks' tools (integration/deploy-check/install.sh) and the
# OpenTelemetry Python SDK (integration/otel-python/install.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

set -a
# shellcheck disable=SC1090
eval "$(integration/stack.sh up)"
set +a

# Each end-to-end test makes its own database obs_*; drop those of earlier runs.
if command -v psql >/dev/null 2>&1; then
  psql "${DATABASE_URL%/*}/postgres" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'obs\_%'" 2>/dev/null |
    while read -r db; do [ -n "$db" ] && psql "${DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; done || true
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest" >&2
  cargo install cargo-nextest --locked >&2
fi

# The UI tests' headless browser (Debian's chromium and chromium-driver).
set -a
eval "$(integration/stack.sh browser)"
set +a

# The deployment checks' tools (a Python virtualenv, Debian's docker-compose).
eval "$(integration/deploy-check/install.sh)"
export DEPLOY_CHECK_PYTHON

# The official OpenTelemetry Python SDK the metrics and logs tests send with
# (a virtualenv; the tests run the same script, which is then a no-op).
integration/otel-python/install.sh >/dev/null

# Binaries and tests in one build: built apart, they resolve the
# dev-dependencies' features differently and half the workspace is built twice.
cargo build --workspace --bins --tests
cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc
