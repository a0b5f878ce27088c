#!/usr/bin/env bash
# hookd's benchmarks, start to finish, on this machine: builds the release binaries, starts
# PostgreSQL and Redis if they are not running, measures the pgbench single-row insert ceiling
# and hookd in each deployment profile, and writes BENCHMARKS.md and bench/benchmarks.png.
#
# Every target is a ratio between numbers measured in this one run: shared machines are noisy,
# so absolute numbers from different runs do not compare. pgbench runs before and after the
# hookd measurements and its mean is the ceiling.
#
# The processing measurements (bench/processing.sh), per profile: the accept-only rate, the
# drain rate of the backlog that left (workers started after it was accepted), throughput to
# completion (`hookd serve`: N events accepted under load / the time until all N are completed),
# and what each completed event costs the database (WAL bytes, transactions, tuples, CPU).
#
#   bench/run.sh                     # everything: about 10 minutes after the build
#   BENCH_SECONDS=5 bench/run.sh     # shorter and noisier
#   bench/run.sh --only completion   # the processing measurements alone, 5 s loads: a few
#                                    # minutes; writes bench/out/processing.{md,json}, not
#                                    # BENCHMARKS.md
#   HOOKD_BENCH_BASELINE=/path/to/hookd bench/run.sh --only completion
#                                    # the same for another hookd binary too, side by side
#                                    # (before/after), interleaved profile by profile
#
# Settings (environment): BENCH_SECONDS (per measurement, default 10; 5 with --only),
# BENCH_CONCURRENCY (closed-loop connections, default 128), BENCH_PORT (default 3901),
# BENCH_PROFILES (default "sqlite postgres postgres-redis"), BENCH_DRAIN_TIMEOUT (longest wait
# for a backlog to complete, default 600 s), HOOKD_BENCH_BASELINE (a hookd binary measured as
# "baseline" beside this tree's "current" one), HOOKD_BENCH_PG_URL, HOOKD_BENCH_REDIS_URL,
# BENCH_KEEP_LOGS=1 to keep hookd's logs in bench/out/logs.
set -euo pipefail
cd "$(dirname "$0")/.."

ONLY=""
case "${1:-}" in
  "") ;;
  --only)
    [ "${2:-}" = completion ] || { printf 'usage: bench/run.sh [--only completion]\n' >&2; exit 2; }
    ONLY=completion ;;
  *) printf 'usage: bench/run.sh [--only completion]\n' >&2; exit 2 ;;
esac

PG_URL="${HOOKD_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL_T="${HOOKD_BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
DURATION="${BENCH_SECONDS:-$([ -n "$ONLY" ] && echo 5 || echo 10)}"
PROFILES="${BENCH_PROFILES:-sqlite postgres postgres-redis}"
BASELINE="${HOOKD_BENCH_BASELINE:-}"
CONCURRENCY="${BENCH_CONCURRENCY:-128}"
PORT="${BENCH_PORT:-3901}"
PGBENCH_CLIENTS=32
BODY_BYTES=1500
DUPLICATES=0.1
SECRET=whsec_benchmark_only_not_a_real_secret
OUT="$PWD/bench/out"
WORK="$PWD/bench/.work"
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
PG_BASE="${PG_URL%/*}"
URL="http://127.0.0.1:$PORT"

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
fact() { printf '%s=%s\n' "$1" "$2" >>"$OUT/facts.txt"; }

HOOKD_PID=""
HOOKD_BIN="$BIN/hookd"
BENCH_DBS=()
cleanup() {
  if declare -F proc_cleanup >/dev/null; then proc_cleanup; fi
  if [ -n "$HOOKD_PID" ]; then kill "$HOOKD_PID" 2>/dev/null || true; wait "$HOOKD_PID" 2>/dev/null || true; fi
  for db in "${BENCH_DBS[@]}"; do psql "$PG_URL" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- prerequisites -----------------------------------------------------------------------------
for tool in cargo psql pgbench redis-cli curl; do
  command -v "$tool" >/dev/null || die "$tool is needed (pgbench and psql: apt-get install postgresql-client)."
done
command -v sqlite3 >/dev/null || command -v python3 >/dev/null ||
  die "sqlite3 or python3 is needed to count events in the SQLite profile (apt-get install sqlite3)."
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
[ "$free_kb" -gt 3000000 ] || die "less than 3 GB free on $(df -P . | awk 'NR == 2 { print $6 }'); the runs write about 2 GB."
if curl -s -o /dev/null "$URL/health"; then die "something already listens on port $PORT (set BENCH_PORT)."; fi
if [ -n "$BASELINE" ]; then
  [ -x "$BASELINE" ] || die "HOOKD_BENCH_BASELINE=$BASELINE is not an executable file."
  BASELINE=$(realpath "$BASELINE")
fi
for profile in $PROFILES; do
  case "$profile" in sqlite | postgres | postgres-redis) ;; *) die "unknown profile $profile in BENCH_PROFILES" ;; esac
done
. bench/processing.sh

. scripts/services.sh
ensure_postgres
ensure_redis

say "building release binaries"
cargo build --release --locked -p hookd -p hookd-bench --bins

rm -rf "$OUT" "$WORK"
mkdir -p "$OUT/logs" "$WORK"
cat >"$WORK/hookd.toml" <<'EOF'
# One log step per event: the end-to-end measurements time received -> completed.
[[routes]]
name = "bench"
steps = [{ action = "log" }]
EOF

# --- the machine -------------------------------------------------------------------------------
say "describing the machine"
fact machine.cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) × $(nproc) (load average at start: $(cut -d' ' -f1-3 /proc/loadavg))"
fact machine.memory "$(free -g | awk '/^Mem/ { print $2 " GB" }')"
fact machine.os "$(. /etc/os-release && echo "$PRETTY_NAME"), Linux $(uname -r)"
fact machine.postgres "$(psql "$PG_URL" -Atc "select split_part(version(), ' ', 2) || ', shared_buffers ' || current_setting('shared_buffers') || ', synchronous_commit ' || current_setting('synchronous_commit') || ', max_connections ' || current_setting('max_connections')")"
fact machine.redis "$(redis-cli -u "$REDIS_URL_T" info server | awk -F: '/^redis_version/ { print $2 }' | tr -d '\r')"
sync_ms=$(dd if=/dev/zero of="$WORK/fsync.probe" bs=8k count=100 oflag=dsync 2>&1 | awk '/copied/ { printf "%.2f", $(NF-3) / 100 * 1000 }')
rm -f "$WORK/fsync.probe"
fact machine.disk "one 8 kB synchronous write takes ${sync_ms} ms (dd oflag=dsync): every commit waits for at least one"
fact machine.rustc "$(rustc --version)"
fact run.date "$(date -u '+%Y-%m-%d %H:%M UTC')"
fact run.git "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (modified)')"
cmd="bench/run.sh${ONLY:+ --only $ONLY}"
[ -n "$BASELINE" ] && cmd="HOOKD_BENCH_BASELINE=$BASELINE $cmd"
[ "$DURATION" != "$([ -n "$ONLY" ] && echo 5 || echo 10)" ] && cmd="BENCH_SECONDS=$DURATION $cmd"
[ "$CONCURRENCY" != 128 ] && cmd="BENCH_CONCURRENCY=$CONCURRENCY $cmd"
fact run.command "$cmd"
fact run.settings "closed loop with $CONCURRENCY connections and open loop at 50% of each profile's maximum, ${DURATION} s per measurement, load generator on one thread; hookd with its defaults (HOOKD_DB_POOL_SIZE=16, HOOKD_WORKERS=32, HOOKD_BATCH_WINDOW_US=200, HOOKD_BATCH_MAX=256) and one \`log\` step per event"
fact pgbench.clients "$PGBENCH_CLIENTS"

# --- helpers -----------------------------------------------------------------------------------
new_pg_db() {
  psql "$PG_URL" -qc "drop database if exists $1 with (force)" >/dev/null
  psql "$PG_URL" -qc "create database $1" >/dev/null
  BENCH_DBS+=("$1")
}

drop_pg_db() { psql "$PG_URL" -qc "drop database if exists $1 with (force)" >/dev/null; }

# start_hookd <role> <log name> <env...>: runs target/release/hookd <role>; returns once /health
# answers (api, serve) or once the process runs (worker).
start_hookd() {
  local role=$1 log=$2
  shift 2
  env -i PATH="$PATH" HOME="${HOME:-/root}" HOOKD_CONFIG="$WORK/hookd.toml" HOOKD_BIND=127.0.0.1 \
    PORT="$PORT" STRIPE_WEBHOOK_SECRET="$SECRET" "$@" \
    "$HOOKD_BIN" "$role" >"$OUT/logs/$log.log" 2>&1 &
  HOOKD_PID=$!
  if [ "$role" = worker ]; then
    sleep 0.5
    kill -0 "$HOOKD_PID" 2>/dev/null || die "hookd $role did not start: $(tail -5 "$OUT/logs/$log.log")"
    return
  fi
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$URL/health" && return
    kill -0 "$HOOKD_PID" 2>/dev/null || break
    sleep 0.1
  done
  die "hookd $role did not become healthy: $(tail -5 "$OUT/logs/$log.log")"
}

stop_hookd() {
  kill -TERM "$HOOKD_PID"
  wait "$HOOKD_PID" 2>/dev/null || true
  HOOKD_PID=""
}

# Resident memory of the running hookd in bytes: VmRSS (now) or VmHWM (peak so far).
rss() { awk -v f="$1:" '$1 == f { print $2 * 1024 }' "/proc/$HOOKD_PID/status"; }

# completed <database url>: events in status completed. The status lives in `deliveries` where
# that table exists (the narrow delivery-state table), else in `events`, so one run can measure
# binaries of either schema side by side.
completed() {
  case "$1" in
    sqlite:*)
      local file=${1#sqlite://} sql
      sql="select case when exists (select 1 from sqlite_master where type = 'table' and name = 'deliveries') then 'deliveries' else 'events' end"
      if command -v sqlite3 >/dev/null; then
        sqlite3 -readonly "$file" "select count(*) from $(sqlite3 -readonly "$file" "$sql") where status = 'completed'"
      else
        python3 -c "import sqlite3,sys; c=sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True); t=c.execute(sys.argv[2]).fetchone()[0]; print(c.execute('select count(*) from ' + t + \" where status = 'completed'\").fetchone()[0])" "$file" "$sql"
      fi ;;
    # One statement, so one transaction of the database per poll (bench/processing.sh subtracts them).
    *) psql "$1" -Atc "select (xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %s where status = %L',
         coalesce(to_regclass('public.deliveries'), 'public.events'::regclass), 'completed'), false, true, '')))[1]::text::bigint" ;;
  esac
}

# load <name> <args...>: the load generator against the running hookd; summary to <name>.json.
load() {
  local name=$1
  shift
  "$BIN/hookd-bench" load --url "$URL/webhooks/stripe" --secret "$SECRET" --duplicates "${LOAD_DUPLICATES:-$DUPLICATES}" \
    --body-bytes "$BODY_BYTES" --run-id "$name-$RANDOM" --json "$OUT/$name.json" "$@" | sed 's/^/    /'
}

ok_rps() { sed -n 's/.*"ok_rps": \([0-9.]*\).*/\1/p' "$OUT/$1.json"; }

# rate_between <database url> <seconds>: completions per second over the next <seconds>.
rate_over() {
  local c1 t1 c2 t2
  c1=$(completed "$1"); t1=$(now)
  sleep "$2"
  c2=$(completed "$1"); t2=$(now)
  echo "$c1 $t1 $c2 $t2" | awk '{ printf "%.1f", ($3 - $1) / ($4 - $2) }'
}

pgbench_ceiling() {
  local name=$1
  "$BIN/hookd-bench" pgbench-script --body-bytes "$BODY_BYTES" >"$WORK/insert.sql"
  new_pg_db hookd_bench_pgbench
  env -i PATH="$PATH" DATABASE_URL="$PG_BASE/hookd_bench_pgbench" HOOKD_CONFIG=/dev/null \
    "$BIN/hookd" migrate >"$OUT/logs/pgbench-migrate.log" 2>&1
  pgbench -n -c "$PGBENCH_CLIENTS" -j 2 -T 2 -M prepared -f "$WORK/insert.sql" "$PG_BASE/hookd_bench_pgbench" >/dev/null 2>&1
  pgbench -n -c "$PGBENCH_CLIENTS" -j 2 -T "$DURATION" -M prepared -f "$WORK/insert.sql" \
    "$PG_BASE/hookd_bench_pgbench" >"$OUT/$name.txt" 2>&1 || die "pgbench failed: $(tail -5 "$OUT/$name.txt")"
  drop_pg_db hookd_bench_pgbench
  sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$OUT/$name.txt"
}

# pgbench_latency <rate>: p50 and p99 (ms) of pgbench's single-row inserts at a fixed rate, timed
# from each transaction's scheduled start as the load generator's open loop times requests.
pgbench_latency() {
  new_pg_db hookd_bench_pgbench
  env -i PATH="$PATH" DATABASE_URL="$PG_BASE/hookd_bench_pgbench" HOOKD_CONFIG=/dev/null \
    "$BIN/hookd" migrate >"$OUT/logs/pgbench-migrate.log" 2>&1
  (cd "$WORK" && rm -f pgbench_log.* &&
    pgbench -n -c "$PGBENCH_CLIENTS" -j 2 -T "$DURATION" -R "$1" -M prepared -f insert.sql -l \
      "$PG_BASE/hookd_bench_pgbench" >"$OUT/pgbench-rate.txt" 2>&1) ||
    die "pgbench failed: $(tail -5 "$OUT/pgbench-rate.txt")"
  drop_pg_db hookd_bench_pgbench
  cat "$WORK"/pgbench_log.* | awk '{ print $3 }' | sort -n |
    awk '{ a[NR] = $1 } END { printf "%.2f %.2f", a[int(NR * 0.5)] / 1000, a[int(NR * 0.99)] / 1000 }'
  rm -f "$WORK"/pgbench_log.*
}

# --- processing: accept only, drain, to completion; per profile, baseline beside current -----
processing() {
  proc_setup
  fact run.processing "closed loop with $CONCURRENCY connections for ${DURATION} s, no redeliveries; drain and completion waits up to ${PROC_DRAIN_TIMEOUT} s"
  for profile in $PROFILES; do
    [ -z "$BASELINE" ] || measure_processing baseline "$BASELINE" "$profile"
    measure_processing current "$BIN/hookd" "$profile"
  done
  HOOKD_BIN="$BIN/hookd"
}

if [ -n "$ONLY" ]; then
  processing
  sed -i "s/^\(machine.cpu=.*\))$/\1; at the end: $(cut -d' ' -f1-3 /proc/loadavg))/" "$OUT/facts.txt"
  say "writing bench/out/processing.md and bench/out/processing.json"
  "$BIN/hookd-bench" processing --dir "$OUT" --markdown "$OUT/processing.md" --json "$OUT/processing.json"
  [ "${BENCH_KEEP_LOGS:-}" = 1 ] || rm -rf "$OUT/logs"
  echo "done: bench/out/processing.md, bench/out/processing.json (raw results in bench/out)"
  exit 0
fi

# --- the ceiling, before -----------------------------------------------------------------------
say "pgbench: single-row inserts into hookd's events table, $PGBENCH_CLIENTS clients, ${DURATION} s"
tps_before=$(pgbench_ceiling pgbench-before)
echo "    $tps_before tps"
fact pgbench.body_bytes "$(sed -n "s/.*convert_to('\(.*\)', 'UTF8').*/\1/p" "$WORK/insert.sql" | tr -d '\n' | wc -c)"

# --- hookd, profile by profile -----------------------------------------------------------------
for profile in $PROFILES; do
  say "hookd, profile $profile"
  env_for() { # env_for <phase>: the variables selecting this profile's store and queue
    case "$profile" in
      sqlite) echo "DATABASE_URL=sqlite://$WORK/$1.db" ;;
      postgres) echo "DATABASE_URL=$PG_BASE/hookd_bench_$1" ;;
      postgres-redis) echo "DATABASE_URL=$PG_BASE/hookd_bench_$1 REDIS_URL=$REDIS_URL_T HOOKD_REDIS_PREFIX=bench_$1_$$" ;;
    esac
  }
  [ "$profile" = sqlite ] || { new_pg_db hookd_bench_accept; new_pg_db hookd_bench_e2e; }
  accept_env=$(env_for accept)
  accept_db=${accept_env%% *}
  accept_db=${accept_db#DATABASE_URL=}
  e2e_env=$(env_for e2e)
  e2e_db=${e2e_env%% *}
  e2e_db=${e2e_db#DATABASE_URL=}

  # Accepting only (`hookd api`): the maximum rate, then latency at half of it.
  # shellcheck disable=SC2086
  start_hookd api "$profile-api" $accept_env
  rss_idle=$(rss VmRSS)
  echo "  warm-up (2 s)"
  load "$profile-warmup" --concurrency "$CONCURRENCY" --duration 2 --requests 40000 >/dev/null
  echo "  maximum accept rate: closed loop, $CONCURRENCY connections, ${DURATION} s"
  load "$profile-max" --concurrency "$CONCURRENCY" --duration "$DURATION" --requests $((DURATION * 20000))
  max=$(ok_rps "$profile-max")
  half=$(echo "$max" | awk '{ printf "%.0f", $1 / 2 }')
  echo "  latency at 50% of the maximum: open loop at $half req/s, ${DURATION} s"
  load "$profile-half" --rate "$half" --duration "$DURATION" --requests $((half * DURATION + 10))
  peak=$(rss VmHWM)
  stop_hookd

  # Workers alone (`hookd worker`) on the backlog the api left: the drain rate.
  echo "  backlog drain: hookd worker on the pending events, ${DURATION} s"
  # shellcheck disable=SC2086
  start_hookd worker "$profile-worker" $accept_env
  sleep 1
  drain=$(rate_over "$accept_db" "$DURATION")
  echo "    $drain events/s"
  peak=$(printf '%s\n%s\n' "$peak" "$(rss VmHWM)" | sort -n | tail -1)
  stop_hookd

  # Everything at once (`hookd serve`): completions per second while accepting flat out.
  echo "  end to end: hookd serve, closed loop, completions counted over ${DURATION} s"
  # shellcheck disable=SC2086
  start_hookd serve "$profile-serve" $e2e_env
  load "$profile-e2e-load" --concurrency "$CONCURRENCY" --duration "$((DURATION + 2))" --requests $((DURATION * 20000)) >/dev/null &
  load_pid=$!
  sleep 1
  e2e=$(rate_over "$e2e_db" "$DURATION")
  wait "$load_pid"
  echo "    $e2e events/s completed (accepted meanwhile: $(ok_rps "$profile-e2e-load") req/s)"
  peak=$(printf '%s\n%s\n' "$peak" "$(rss VmHWM)" | sort -n | tail -1)
  stop_hookd

  [ "$profile" = postgres ] && pg_half=$half
  fact "$profile.rss_idle_bytes" "$rss_idle"
  fact "$profile.rss_peak_bytes" "$peak"
  fact "$profile.drain_rps" "$drain"
  fact "$profile.e2e_rps" "$e2e"
  fact "$profile.e2e_accept_rps" "$(ok_rps "$profile-e2e-load")"
  if [ "$profile" = sqlite ]; then
    rm -f "$WORK"/accept.db* "$WORK"/e2e.db*
  else
    drop_pg_db hookd_bench_accept
    drop_pg_db hookd_bench_e2e
  fi
  if [ "$profile" = postgres-redis ]; then
    redis-cli -u "$REDIS_URL_T" --scan --pattern "{bench_*_$$}:*" | xargs -r redis-cli -u "$REDIS_URL_T" del >/dev/null
  fi
done

processing

# --- the database alone at the rate of the PostgreSQL latency run ------------------------------
if [ -n "${pg_half:-}" ]; then
  say "pgbench at $pg_half tps (the PostgreSQL profile's 50% rate), ${DURATION} s: latency from the scheduled start"
  read -r pg_p50 pg_p99 <<<"$(pgbench_latency "$pg_half")"
  echo "    p50 $pg_p50 ms, p99 $pg_p99 ms"
  fact pgbench.rate_tps "$pg_half"
  fact pgbench.rate_p50_ms "$pg_p50"
  fact pgbench.rate_p99_ms "$pg_p99"
fi

# --- the ceiling, after ------------------------------------------------------------------------
say "pgbench again, after the hookd runs"
tps_after=$(pgbench_ceiling pgbench-after)
echo "    $tps_after tps"
fact pgbench.tps_before "$tps_before"
fact pgbench.tps_after "$tps_after"
fact pgbench.tps "$(echo "$tps_before $tps_after" | awk '{ printf "%.1f", ($1 + $2) / 2 }')"
sed -i "s/^\(machine.cpu=.*\))$/\1; at the end: $(cut -d' ' -f1-3 /proc/loadavg))/" "$OUT/facts.txt"

say "writing BENCHMARKS.md and bench/benchmarks.png"
"$BIN/hookd-bench" report --dir "$OUT" --markdown BENCHMARKS.md --chart bench/benchmarks.png
"$BIN/hookd-bench" processing --dir "$OUT" --markdown "$OUT/processing.md" --json "$OUT/processing.json" >/dev/null
[ "${BENCH_KEEP_LOGS:-}" = 1 ] || rm -rf "$OUT/logs"
echo "done: BENCHMARKS.md, bench/benchmarks.png (raw results in bench/out)"
