# hookd: build with the Rust toolchain, run on a small Debian image as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The workspace's other member (the load generator) must be present for cargo to load the
# workspace; only hookd is built.
COPY bench/Cargo.toml bench/Cargo.toml
COPY bench/src bench/src
COPY src src
COPY migrations migrations
RUN cargo build --release --locked --bin hookd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hookd --create-home hookd
COPY --from=build /src/target/release/hookd /usr/local/bin/hookd
USER hookd
WORKDIR /var/lib/hookd
ENV PORT=3001
EXPOSE 3001
# Ready when the store can take writes (503 otherwise). `hookd worker` has no HTTP server:
# docker-compose.yml turns this check off for workers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1
ENTRYPOINT ["hookd"]
CMD ["serve"]
