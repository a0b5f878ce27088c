#!/usr/bin/env bash
# Ordered delivery per key (a route's `order_by`), throughput to completion, in one run:
#
#   unordered  a route without order_by
#   ordered    the same route with order_by = "/data/object/id": every event its own key
#              (hookd-bench's events each have their own payment intent), so as many keys as
#              events (BENCH_EVENTS, 10,000 by default)
#   hot        order_by = "/type": every event the same key, so one event at a time
#
# Each: `hookd serve` on a new PostgreSQL database, BENCH_EVENTS unique events sent by
# `hookd-bench load` (closed loop, 64 connections), timed from the first request until every
# event is completed. The route's step is `log`, so what is measured is hookd and its store,
# not a destination. Prints one line per profile and the ordered/unordered ratio.
#
#   cargo build --release -p hookd -p hookd-bench --bins && bench/ordered.sh
set -euo pipefail

PG_BASE="${HOOKD_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_BASE="${PG_BASE%/*}"
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
EVENTS="${BENCH_EVENTS:-10000}"
HOT_EVENTS="${BENCH_HOT_EVENTS:-2000}"
SECRET=whsec_bench_ordered
PORT="${BENCH_PORT:-3097}"
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT

completed() {
  psql "$1" -Atc "select count(*) from deliveries where status = 'completed'"
}

# run <label> <order_by line> <events>: prints "<label> <events> <seconds> <events/s>".
run() {
  local label=$1 order=$2 n=$3 db="hookd_bench_ordered_$1"
  psql "$PG_BASE/postgres" -qc "drop database if exists $db" -c "create database $db" >/dev/null
  printf '[[routes]]\nname = "bench"\nprovider = "stripe"\n%s\nsteps = [{ action = "log" }]\n' "$order" >"$WORK/hookd.toml"
  env -i PATH="$PATH" DATABASE_URL="$PG_BASE/$db" HOOKD_CONFIG="$WORK/hookd.toml" \
    HOOKD_BIND=127.0.0.1 PORT="$PORT" STRIPE_WEBHOOK_SECRET="$SECRET" HOOKD_LOG=warn HOOKD_LOG_DIR= \
    "$BIN/hookd" serve >"$WORK/$label.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.1; done
  local start end
  start=$(date +%s.%N)
  "$BIN/hookd-bench" load --url "http://127.0.0.1:$PORT/webhooks/stripe" --secret "$SECRET" \
    --requests "$n" --duplicates 0 --duration 600 --concurrency 64 --run-id "$label" >/dev/null
  until [ "$(completed "$PG_BASE/$db")" -ge "$n" ]; do sleep 0.2; done
  end=$(date +%s.%N)
  kill -TERM $PID; wait $PID 2>/dev/null || true
  psql "$PG_BASE/postgres" -qc "drop database $db" >/dev/null
  echo "$label $n $start $end" | awk '{ printf "%-9s %6d events  %7.1f s  %8.1f events/s\n", $1, $2, $4 - $3, $2 / ($4 - $3) }'
}

run unordered "" "$EVENTS" | tee "$WORK/u"
run ordered 'order_by = "/data/object/id"' "$EVENTS" | tee "$WORK/o"
run hot 'order_by = "/type"' "$HOT_EVENTS"
paste "$WORK/u" "$WORK/o" | awk '{ printf "ordered / unordered: %.2f\n", $13 / $6 }'
