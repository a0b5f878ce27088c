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
COPY samples samples
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
# 3001: the public listener of `serve` and `api`. 9090: health and metrics of `hookd worker`
# (HOOKD_INTERNAL_ADDR, default 0.0.0.0:9090).
EXPOSE 3001 9090
# Healthy when the store can take writes and memory is under the limit (503 otherwise): on the
# public port for `serve` and `api`, on the worker's own port for `hookd worker`. With
# HOOKD_INTERNAL_ADDR set to another port, override this check (docker-compose.yml shows how).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null \
   || curl -fsS "http://127.0.0.1:9090/health" >/dev/null || exit 1
ENTRYPOINT ["hookd"]
CMD ["serve"]
