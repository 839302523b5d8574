# syntax=docker/dockerfile:1
# Container images of LLM Observatory: one Dockerfile, one target per binary.
#
#   docker build --target collector -t llm-observatory/collector .
#   docker build --target consumer  -t llm-observatory/consumer  .   # timescale, tempo, migrate, replay, dlq, offsets, lag
#   docker build --target api       -t llm-observatory/api       .
#
# Stages:
#   chef     the pinned Rust toolchain (rust-toolchain.toml) and cargo-chef;
#   planner  reduces the workspace to its manifests (recipe.json);
#   builder  builds the dependencies from the recipe alone, so that layer is
#            reused until a Cargo.toml or Cargo.lock changes, then our crates
#            (release profile of the workspace);
#   runtime  Debian bookworm-slim: CA certificates (TLS to S3, GCS, Azure,
#            Redis, PostgreSQL), curl for the health check, user 10001;
#   collector / consumer / api: the runtime with one binary, its ports, its
#            health check.
# The binaries link glibc, zlib and OpenSSL (librdkafka's TLS and SASL)
# dynamically (librdkafka, zstd and aws-lc are built in statically); the
# builder image has their headers, the runtime installs libssl3.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG RUST_VERSION
# Build with the image's toolchain; rust-toolchain.toml would add rustfmt and
# clippy, which an image build does not use.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
# cmake: aws-lc-sys (rustls' crypto provider) may build with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: cached until the manifests or the lock file change.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked \
      --bin observatory-collector --bin observatory-consumer --bin observatory-api \
 && install -D -m 0755 -t /out \
      target/release/observatory-collector \
      target/release/observatory-consumer \
      target/release/observatory-api

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 observatory \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/observatory \
      --shell /usr/sbin/nologin observatory \
 && install -d -o 10001 -g 10001 -m 0755 /var/lib/observatory
WORKDIR /var/lib/observatory
# Numeric, so that Kubernetes' runAsNonRoot can check it without /etc/passwd.
USER 10001:10001
ENV LOG_FORMAT=json \
    RUST_LOG=info

FROM runtime AS collector
COPY --from=builder /out/observatory-collector /usr/local/bin/
EXPOSE 4317 4318 8888
# /healthz of the admin server (COLLECTOR_ADMIN_ADDR, port 8888 by default).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["sh", "-c", "curl -fsS -o /dev/null http://127.0.0.1:${COLLECTOR_ADMIN_ADDR##*:}/healthz"]
ENV COLLECTOR_ADMIN_ADDR=0.0.0.0:8888
ENTRYPOINT ["/usr/local/bin/observatory-collector"]

FROM runtime AS consumer
COPY --from=builder /out/observatory-consumer /usr/local/bin/
# timescale serves its admin port on 8889, tempo on 8890 (CONSUMER_ADMIN_ADDR).
EXPOSE 8889 8890
ENV DATA_DIR=/var/lib/observatory
# /healthz of whichever sink runs: CONSUMER_ADMIN_ADDR's port, else the two
# defaults. The one-shot commands (migrate, replay, ...) serve no port; run
# them with --no-healthcheck or ignore the status.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["sh", "-c", "for p in ${CONSUMER_ADMIN_ADDR##*:} 8889 8890; do curl -fsS -o /dev/null http://127.0.0.1:$p/healthz && exit 0; done; exit 1"]
ENTRYPOINT ["/usr/local/bin/observatory-consumer"]
CMD ["--help"]

FROM runtime AS api
COPY --from=builder /out/observatory-api /usr/local/bin/
EXPOSE 8080
# /healthz is served on the API port itself (API_ADDR).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["sh", "-c", "curl -fsS -o /dev/null http://127.0.0.1:${API_ADDR##*:}/healthz"]
ENV API_ADDR=0.0.0.0:8080
ENTRYPOINT ["/usr/local/bin/observatory-api"]
