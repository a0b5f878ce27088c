#!/usr/bin/env bash
# Where the time goes, on PostgreSQL, with the whole machine sampled by perf so hookd,
# PostgreSQL, the load generator and the kernel are seen side by side.
#   accept (default): `hookd api` under closed-loop load from hookd-bench -> bench/profile.txt
#   drain:            `hookd worker` processing a backlog the api stored -> bench/profile-drain.txt
# Each report has: 1. CPU share per process; 2. hookd's own time grouped by area (HTTP,
# signature check, JSON, logs, database driver, runtime, kernel, allocator); 3. hookd's hottest
# functions; 4. PostgreSQL's hottest functions. With inferno installed (`cargo install
# inferno`), also bench/flamegraph.svg (bench/flamegraph-drain.svg) of hookd alone.
#
#   bench/profile.sh                   # about 30 s after the build
#   bench/profile.sh drain             # about 45 s
#   PROFILE_SECONDS=20 bench/profile.sh
#
# Settings (environment): PROFILE_SECONDS (sampling time, default 10), BENCH_CONCURRENCY
# (default 128), BENCH_PORT (default 3901), HOOKD_BENCH_PG_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-accept}"
case "$MODE" in
  accept) REPORT=bench/profile.txt FLAME=bench/flamegraph.svg ROLE=api ;;
  drain) REPORT=bench/profile-drain.txt FLAME=bench/flamegraph-drain.svg ROLE=worker ;;
  *) printf 'usage: bench/profile.sh [accept|drain]\n' >&2; exit 2 ;;
esac
PG_URL="${HOOKD_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
SECONDS_TO_SAMPLE="${PROFILE_SECONDS:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-128}"
PORT="${BENCH_PORT:-3901}"
SECRET=whsec_benchmark_only_not_a_real_secret
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
PG_BASE="${PG_URL%/*}"
DB=hookd_bench_profile
WORK=$(mktemp -d)
URL="http://127.0.0.1:$PORT"

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

HOOKD_PID=""
LOAD_PID=""
cleanup() {
  [ -z "$LOAD_PID" ] || kill "$LOAD_PID" 2>/dev/null || true
  if [ -n "$HOOKD_PID" ]; then kill "$HOOKD_PID" 2>/dev/null || true; wait "$HOOKD_PID" 2>/dev/null || true; fi
  psql "$PG_URL" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in cargo psql perf curl; do
  command -v "$tool" >/dev/null || die "$tool is needed (perf: apt-get install linux-perf)."
done
perf record -q -o "$WORK/probe.data" true 2>/dev/null ||
  die "perf cannot sample here (as root, or lower /proc/sys/kernel/perf_event_paranoid)."
if curl -s -o /dev/null "$URL/health"; then die "something already listens on port $PORT (set BENCH_PORT)."; fi

. scripts/services.sh
ensure_postgres

say "building release binaries"
cargo build --release --locked -p hookd -p hookd-bench --bins

psql "$PG_URL" -qc "drop database if exists $DB with (force)" >/dev/null
psql "$PG_URL" -qc "create database $DB" >/dev/null
printf '[[routes]]\nname = "bench"\nsteps = [{ action = "log" }]\n' >"$WORK/hookd.toml"
# start_hookd <role>: hookd on the profile's database; returns once it runs (and, for the api,
# answers /health).
start_hookd() {
  env -i PATH="$PATH" HOME="${HOME:-/root}" HOOKD_CONFIG="$WORK/hookd.toml" HOOKD_BIND=127.0.0.1 \
    PORT="$PORT" STRIPE_WEBHOOK_SECRET="$SECRET" DATABASE_URL="$PG_BASE/$DB" HOOKD_LOG_DIR="$WORK/logs" \
    "$BIN/hookd" "$1" >"$WORK/hookd-$1.log" 2>&1 &
  HOOKD_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$HOOKD_PID" 2>/dev/null || die "hookd $1 did not start: $(tail -5 "$WORK/hookd-$1.log")"
    [ "$1" = worker ] && sleep 0.5 && return
    curl -sf -o /dev/null "$URL/health" && return
    sleep 0.1
  done
  die "hookd $1 did not become healthy: $(tail -5 "$WORK/hookd-$1.log")"
}
stop_hookd() { kill -TERM "$HOOKD_PID"; wait "$HOOKD_PID" 2>/dev/null || true; HOOKD_PID=""; }
completed() { psql "$PG_BASE/$DB" -Atc "select count(*) from events where status = 'completed'"; }

start_hookd api
if [ "$MODE" = accept ]; then
  say "load: closed loop, $CONCURRENCY connections; sampling the machine for ${SECONDS_TO_SAMPLE} s"
  "$BIN/hookd-bench" load --url "$URL/webhooks/stripe" --secret "$SECRET" --concurrency "$CONCURRENCY" \
    --duration $((SECONDS_TO_SAMPLE + 4)) --requests $(((SECONDS_TO_SAMPLE + 4) * 20000)) \
    --run-id "profile-$RANDOM" >"$WORK/load.txt" &
  LOAD_PID=$!
  sleep 2
  perf record -q -a -g -F 499 -o "$WORK/perf.data" -- sleep "$SECONDS_TO_SAMPLE" 2>/dev/null
  wait "$LOAD_PID"
  LOAD_PID=""
  stop_hookd
else
  say "a backlog: closed loop, $CONCURRENCY connections, $((SECONDS_TO_SAMPLE + 6)) s"
  "$BIN/hookd-bench" load --url "$URL/webhooks/stripe" --secret "$SECRET" --concurrency "$CONCURRENCY" \
    --duration $((SECONDS_TO_SAMPLE + 6)) --requests $(((SECONDS_TO_SAMPLE + 6) * 20000)) \
    --run-id "profile-$RANDOM" >/dev/null
  stop_hookd
  say "hookd worker draining it; sampling the machine for ${SECONDS_TO_SAMPLE} s"
  start_hookd worker
  sleep 1
  before=$(completed)
  perf record -q -a -g -F 499 -o "$WORK/perf.data" -- sleep "$SECONDS_TO_SAMPLE" 2>/dev/null
  after=$(completed)
  stop_hookd
  echo "$((after - before)) events completed in ${SECONDS_TO_SAMPLE} s: $(((after - before) / SECONDS_TO_SAMPLE)) events/s" >"$WORK/load.txt"
  [ "$after" -lt "$(psql "$PG_BASE/$DB" -Atc 'select count(*) from events')" ] ||
    echo "(the backlog ran out during the sampling: the rate is a lower bound)" >>"$WORK/load.txt"
fi

# Each sample of hookd falls in the first area whose pattern its symbol or library matches.
areas() {
  awk -F'\t' '
    function area(sym, dso) {
      if (dso ~ /kernel/) return "kernel (TCP on loopback, syscalls, scheduling)"
      if (sym ~ /^_?mi_|malloc|free|realloc|memcpy|memmove|memset|alloc::/) return "allocator and memory copies"
      if (sym ~ /tracing|opentelemetry|telemetry|Visit|fmt::Write|write_str|fmt::write|clock_gettime|rfc3339/) return "logs and trace spans (tracing, OpenTelemetry)"
      if (sym ~ /sqlx|postgres|PgConnection|PgArguments/) return "database driver (sqlx: encode rows, protocol)"
      if (sym ~ /hmac|sha2|Sha256|sha256|subtle|compress/) return "signature check (HMAC-SHA256)"
      if (sym ~ /serde_json|serde::|serde_core/) return "JSON (parse the body once, answers)"
      if (sym ~ /hyper|httparse|http::|axum|tower|bytes::/) return "HTTP (hyper, axum)"
      if (sym ~ /tokio|mio|parking_lot|futures|crossbeam|std::sync|std::thread|epoll/) return "async runtime and locks"
      if (sym ~ /hookd/) return "hookd (routing, validation, group commit)"
      if (dso ~ /libc/) return "libc (other)"
      return "other"
    }
    { n[area($2, $3)] += $1; t += $1 }
    END { for (a in n) printf "%6.1f%%  %s\n", 100 * n[a] / t, a }' | sort -rn
}

say "writing $REPORT"
# `head` closes its pipe early on purpose.
set +o pipefail
{
  echo "# hookd $MODE profile ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo "# bench/profile.sh $MODE: hookd $ROLE on PostgreSQL, perf at 499 Hz on every CPU for ${SECONDS_TO_SAMPLE} s"
  echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) × $(nproc)"
  echo
  echo "## what hookd did during the sampling"
  sed -n '1,12p' "$WORK/load.txt"
  echo
  echo "## CPU share per process (all CPUs; idle excluded)"
  perf report -i "$WORK/perf.data" --no-children --sort comm --stdio -q 2>/dev/null |
    awk 'NF && $1 ~ /%$/ && $2 != "swapper" { printf "%8s  %s\n", $1, $2 }' | head -12
  echo
  echo "## hookd's own samples by area (self time)"
  perf report -i "$WORK/perf.data" --comm hookd,tokio-rt-worker,hookd-group-com --no-children \
    --sort sym,dso --stdio -q -g none -F overhead,sym,dso --field-separator=$'\t' 2>/dev/null |
    awk -F'\t' 'NF >= 3 { gsub(/%| /, "", $1); sub(/^\[[.k]\] /, "", $2); print $1 "\t" $2 "\t" $3 }' | areas
  echo
  echo "## hookd's hottest functions (self time, share of hookd's samples)"
  perf report -i "$WORK/perf.data" --comm hookd,tokio-rt-worker,hookd-group-com --no-children \
    --sort sym --stdio -q -g none --percentage relative 2>/dev/null |
    awk 'NF' | head -30 | cut -c1-160
  echo
  echo "## PostgreSQL's hottest functions (self time, share of PostgreSQL's samples)"
  perf report -i "$WORK/perf.data" --comm postgres --no-children \
    --sort sym --stdio -q -g none --percentage relative 2>/dev/null |
    awk 'NF' | head -20 | cut -c1-160
} >"$REPORT"
cat "$REPORT"

if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
  perf script -i "$WORK/perf.data" --comms hookd,tokio-rt-worker,hookd-group-com 2>/dev/null |
    inferno-collapse-perf | inferno-flamegraph --minwidth 0.5 --title "hookd $ROLE on PostgreSQL ($MODE)" >"$FLAME"
  echo "wrote $FLAME"
else
  echo "no flamegraph: inferno is not installed (cargo install inferno)"
fi
