# Multi-stage build of the driftwatch engine (used by docker-compose.yml for the engine and the producer).
FROM rust:1.86-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin driftwatch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app driftwatch
COPY --from=build /src/target/release/driftwatch /usr/local/bin/driftwatch
WORKDIR /app
COPY models models
COPY config config
COPY schemas schemas
USER driftwatch
EXPOSE 9464
ENTRYPOINT ["driftwatch"]
CMD ["run", "--config", "config/default.toml"]
