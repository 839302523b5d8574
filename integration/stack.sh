#!/usr/bin/env bash
# The local stack: real services on loopback for development and tests.
#
#   integration/stack.sh up       start whatever is missing (idempotent), print endpoints
#   integration/stack.sh down     stop what this script started
#   integration/stack.sh build-tools  install what compiling the workspace needs (.ci/run)
#   integration/stack.sh browser  install headless Chromium and chromedriver (UI tests)
#   integration/stack.sh perf     install linux-perf (the sink benchmark's BENCH_PERF)
#   integration/stack.sh status   say what is running
#
# - Kafka protocol: tansu 0.6 (crates.io) on 127.0.0.1:9092. It is installed
#   with `cargo install` when missing, with the storage engines it needs
#   (dynostore for memory://, libsql for sqlite://; a plain install has none),
#   into $OBSERVATORY_TOOLS_DIR (default ~/.cache/llm-observatory/tools) so
#   that every clone reuses it. The stack's broker keeps data in memory
#   (TANSU_STORAGE to change): restarting it empties every topic. Topics are
#   created by our binaries, not here.
# - PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379: reused when
#   already listening, else installed from Debian's packages and started.
# - S3-compatible object storage on 127.0.0.1:9000: s3s-fs 0.14.1 (crates.io,
#   installed like tansu; later versions need a newer rustc), serving
#   .stack/s3/ with SigV4 auth and multipart uploads; bucket `observatory`.
# Data and logs live under .stack/ at the repository root (ignored by git).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${STACK_DIR:-$ROOT/.stack}"
TANSU_VERSION="0.6.0"
TANSU_FEATURES="dynostore,libsql"
TOOLS="${OBSERVATORY_TOOLS_DIR:-$HOME/.cache/llm-observatory/tools}"
TANSU_STORAGE="${TANSU_STORAGE:-memory://tansu/}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
PG_PORT="${PG_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
S3_PORT="${S3_PORT:-9000}"
S3FS_VERSION="0.14.1"
S3_BUCKET="${S3_BUCKET:-observatory}"
S3_ACCESS_KEY="${S3_ACCESS_KEY:-observatory}"
S3_SECRET_KEY="${S3_SECRET_KEY:-observatory-secret}"
mkdir -p "$STATE"

log() { printf '[stack] %s\n' "$*" >&2; }

listening() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_port() { # name port seconds
  local deadline=$((SECONDS + $3))
  until listening 127.0.0.1 "$2"; do
    if ((SECONDS > deadline)); then log "$1 did not open port $2 within $3 s"; return 1; fi
    sleep 0.2
  done
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

build_tools() {
  command -v cargo >/dev/null 2>&1 || { log "cargo is missing: install the Rust toolchain (rust-toolchain.toml names the version)"; exit 1; }
  local missing=()
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v perl >/dev/null 2>&1 || missing+=(perl)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  # librdkafka's TLS and SASL/SCRAM link the system OpenSSL.
  { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; } || missing+=(libssl-dev)
  if ((${#missing[@]})); then
    log "installing build tools for librdkafka and friends: ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

tansu_bin() {
  if [ -n "${TANSU_BIN:-}" ]; then echo "$TANSU_BIN"; return; fi
  local bin="$TOOLS/bin/tansu"
  if [ ! -x "$bin" ]; then
    log "installing tansu $TANSU_VERSION ($TANSU_FEATURES) from crates.io into $TOOLS (a cold build takes 10 minutes or more)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" --root "$TOOLS" >&2
  fi
  echo "$bin"
}

kafka_up() {
  if listening 127.0.0.1 "$KAFKA_PORT"; then log "kafka: reusing 127.0.0.1:$KAFKA_PORT"; return; fi
  local bin; bin="$(tansu_bin)"
  log "kafka: starting tansu on 127.0.0.1:$KAFKA_PORT"
  nohup "$bin" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "$TANSU_STORAGE" \
    >"$STATE/tansu.log" 2>&1 &
  echo $! >"$STATE/tansu.pid"
  wait_port kafka "$KAFKA_PORT" 60
}

postgres_up() {
  if listening 127.0.0.1 "$PG_PORT"; then
    log "postgres: reusing 127.0.0.1:$PG_PORT"
  else
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      log "postgres: installing from Debian's packages"
      apt_install postgresql
    fi
    local version; version="$(ls /etc/postgresql | sort -V | tail -n1)"
    # A fresh Debian cluster asks for passwords on TCP; the local stack (like
    # the machines' own) trusts loopback, which the tests and DATABASE_URL use.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if [ -f "$hba" ] && ! grep -q "observatory-stack" "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust # observatory-stack\nhost all all ::1/128 trust # observatory-stack' "$hba"
    fi
    log "postgres: starting cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
    wait_port postgres "$PG_PORT" 60
  fi
  # The scripts (test.sh, the benchmarks) use psql, also against a server
  # that was already running.
  if ! command -v psql >/dev/null 2>&1; then
    log "postgres: installing the psql client from Debian's packages"
    apt_install postgresql-client
  fi
  if command -v psql >/dev/null 2>&1; then
    if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" 2>/dev/null | grep -q 1; then
      # Trust auth for loopback may need setting up on a fresh install.
      su postgres -c "psql -p $PG_PORT -tAc \"create database test\"" >&2 2>/dev/null \
        || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "create database test" >&2 || true
    fi
  fi
}

redis_up() {
  # The binary is needed even when a Redis already listens: the API's cache
  # tests start a password-protected redis-server of their own.
  if ! command -v redis-server >/dev/null 2>&1; then
    log "redis: installing from Debian's packages"
    apt_install redis-server
  fi
  if listening 127.0.0.1 "$REDIS_PORT"; then log "redis: reusing 127.0.0.1:$REDIS_PORT"; return; fi
  mkdir -p "$STATE/redis"
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$STATE/redis" --logfile "$STATE/redis/redis.log" --pidfile "$STATE/redis.pid" >&2
  wait_port redis "$REDIS_PORT" 30
}

s3fs_bin() {
  local bin="$TOOLS/bin/s3s-fs"
  if [ ! -x "$bin" ]; then
    log "installing s3s-fs $S3FS_VERSION from crates.io into $TOOLS (a few minutes)"
    cargo install s3s-fs --version "$S3FS_VERSION" --locked --features binary --root "$TOOLS" >&2
  fi
  echo "$bin"
}

s3_up() {
  mkdir -p "$STATE/s3/$S3_BUCKET"
  if listening 127.0.0.1 "$S3_PORT"; then log "s3: reusing 127.0.0.1:$S3_PORT"; return; fi
  local bin; bin="$(s3fs_bin)"
  log "s3: starting s3s-fs on 127.0.0.1:$S3_PORT over $STATE/s3"
  nohup "$bin" --host 127.0.0.1 --port "$S3_PORT" \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
    "$STATE/s3" >"$STATE/s3fs.log" 2>&1 &
  echo $! >"$STATE/s3fs.pid"
  wait_port s3 "$S3_PORT" 30
}

stop_pidfile() { # name file
  if [ -f "$2" ]; then
    local pid; pid="$(cat "$2")"
    if kill -0 "$pid" 2>/dev/null; then log "stopping $1 (pid $pid)"; kill "$pid" || true; fi
    rm -f "$2"
  fi
}

status_line() { # name port
  if listening 127.0.0.1 "$2"; then echo "$1: up on 127.0.0.1:$2"; else echo "$1: down (127.0.0.1:$2)"; fi
}

case "${1:-up}" in
  build-tools)
    # What compiling the workspace needs (C toolchain, OpenSSL headers).
    build_tools
    ;;
  browser)
    # The UI tests' browser: Debian's chromium and chromium-driver.
    if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
      log "installing chromium and chromium-driver for the UI tests"
      apt_install chromium chromium-driver
    fi
    echo "CHROMEDRIVER=$(command -v chromedriver)"
    echo "CHROMIUM_BIN=$(command -v chromium)"
    ;;
  perf)
    # The profiler of the sink benchmark's BENCH_PERF: Debian's linux-perf.
    if ! command -v perf >/dev/null 2>&1; then
      log "installing linux-perf for the benchmark's profile"
      apt_install linux-perf
    fi
    echo "PERF_BIN=$(command -v perf)"
    ;;
  up)
    build_tools
    kafka_up
    postgres_up
    redis_up
    s3_up
    cat <<EOT
TANSU_BIN=$(tansu_bin)
KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/test
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
S3_ENDPOINT=http://127.0.0.1:$S3_PORT
S3_BUCKET=$S3_BUCKET
S3_ACCESS_KEY=$S3_ACCESS_KEY
S3_SECRET_KEY=$S3_SECRET_KEY
EOT
    ;;
  down)
    stop_pidfile kafka "$STATE/tansu.pid"
    stop_pidfile redis "$STATE/redis.pid"
    stop_pidfile s3 "$STATE/s3fs.pid"
    ;;
  status)
    status_line kafka "$KAFKA_PORT"
    status_line postgres "$PG_PORT"
    status_line redis "$REDIS_PORT"
    status_line s3 "$S3_PORT"
    ;;
  *)
    echo "usage: $0 up|down|status|build-tools|browser|perf" >&2
    exit 2
    ;;
esac
