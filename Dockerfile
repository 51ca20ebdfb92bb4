# Multi-stage build of the driftwatch engine (used by docker-compose.yml for the engine and the producer).
# The compiler is at least the highest `rust_version` of the crates in Cargo.lock (and equal to
# Cargo.toml's rust-version); tests/python/test_monitoring.py fails when either falls behind.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config zlib1g-dev libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Dependency layer: compile every dependency against stub sources, so editing the code does not
# rebuild them; only a change of Cargo.toml or Cargo.lock does. The stub's own artifacts are
# removed so the real sources are always rebuilt.
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in scoring engine_throughput drift retained_state aggregation; do echo 'fn main() {}' > "benches/$b.rs"; done \
    && cargo build --release --locked --bin driftwatch \
    && rm -rf src benches target/release/driftwatch target/release/deps/driftwatch-* target/release/deps/libdriftwatch-* target/release/.fingerprint/driftwatch-*
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin driftwatch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g libssl3 curl && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app driftwatch
COPY --from=build /src/target/release/driftwatch /usr/local/bin/driftwatch
WORKDIR /app
COPY models models
COPY config config
COPY schemas schemas
USER driftwatch
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD curl -fsS http://127.0.0.1:9464/readyz || exit 1
ENTRYPOINT ["driftwatch"]
CMD ["run", "--config", "config/default.toml"]
