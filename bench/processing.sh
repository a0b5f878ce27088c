# Sourced by bench/run.sh: the processing measurements. For one hookd binary and one profile:
#
#   accept  `hookd api` alone, closed loop for BENCH_SECONDS, no redeliveries: the accept-only
#           rate (events/s) and what accepting costs the database;
#   drain   `hookd worker` started after that, on the whole backlog: N events / the time until
#           the last is completed (the drain rate), and what processing alone costs;
#   serve   `hookd serve` on an empty store, the same load: N events accepted under load / the
#           time from the first request until all N are completed (throughput to completion),
#           and what an event costs from request to completed.
#
# Costs are deltas of the bench database's own counters, never of the whole server, because the
# PostgreSQL server may be shared: WAL bytes of the records that touch the database or belong to
# its transactions (pg_walinspect, over WAL held by a temporary replication slot), transactions
# and tuples from pg_stat_database, CPU of the database's backends and of hookd. The server-wide
# WAL delta (pg_current_wal_lsn) is recorded too, for comparison. Nothing is configured on the
# server: no restart, no setting changed; the slot and the helper database are dropped at exit.
#
# Writes facts `proc.<label>.<profile>.<phase>.<metric>` for `hookd-bench processing`. Needs from
# run.sh: PG_URL, PG_BASE, REDIS_URL_T, WORK, OUT, DURATION, CONCURRENCY, load, start_hookd,
# stop_hookd, new_pg_db, drop_pg_db, completed, fact, now, HOOKD_PID.

PROC_DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-600}"
PROC_SLOT="hookd_bench_slot_$$"
PROC_WAL_DB=hookd_bench_walinspect
PROC_WALINSPECT=""

# proc_setup: the helper database with pg_walinspect, if the server has the extension.
proc_setup() {
  new_pg_db "$PROC_WAL_DB"
  if psql "$PG_BASE/$PROC_WAL_DB" -qc "create extension if not exists pg_walinspect" >/dev/null 2>&1; then
    PROC_WALINSPECT=1
  else
    echo "    pg_walinspect is not available: WAL is the server-wide delta only" >&2
  fi
}

proc_cleanup() {
  psql "$PG_URL" -qc "select pg_drop_replication_slot('$PROC_SLOT') where exists (select 1 from pg_replication_slots where slot_name = '$PROC_SLOT')" >/dev/null 2>&1 || true
}

# Holds WAL from now on, so a checkpoint cannot recycle it before pg_walinspect reads it.
proc_hold_wal() {
  [ -n "$PROC_WALINSPECT" ] || return 0
  proc_cleanup
  psql "$PG_URL" -qc "select pg_create_physical_replication_slot('$PROC_SLOT', true)" >/dev/null
}

# pg_snapshot <db>: "lsn transactions tup_inserted tup_updated tup_deleted" of database <db>.
pg_snapshot() {
  psql "$PG_URL" -Atc "select pg_current_wal_lsn(), xact_commit + xact_rollback, tup_inserted, tup_updated, tup_deleted
    from pg_stat_database where datname = '$1'" | tr '|' ' '
}

# wait_db_idle <db>: until no backend is connected to <db>, so every backend's statistics are
# flushed (a backend flushes them when it exits).
wait_db_idle() {
  for _ in $(seq 1 100); do
    [ "$(psql "$PG_URL" -Atc "select count(*) from pg_stat_activity where datname = '$1'")" = 0 ] && break
    sleep 0.1
  done
  sleep 0.5
}

# pg_db_wal <db> <from lsn> <to lsn>: "bytes fpi_bytes" of the WAL records between the two
# positions that touch a relation of <db>, or belong to a transaction that did (its commit).
pg_db_wal() {
  [ -n "$PROC_WALINSPECT" ] || { echo "- -"; return; }
  # pg_walinspect reads only WAL that is flushed.
  for _ in $(seq 1 50); do
    [ "$(psql "$PG_URL" -Atc "select pg_current_wal_flush_lsn() >= '$3'::pg_lsn")" = t ] && break
    sleep 0.1
  done
  psql "$PG_BASE/$PROC_WAL_DB" -Atc "
    with r as (select xid, record_length, fpi_length, block_ref ~ (' rel [0-9]+/' ||
                 (select oid from pg_database where datname = '$1') || '/') as mine
               from pg_get_wal_records_info('$2', '$3')),
         x as (select distinct xid from r where mine and xid <> 0)
    select coalesce(sum(record_length), 0), coalesce(sum(fpi_length), 0) from r
    where mine or (xid <> 0 and xid in (select xid from x))" | tr '|' ' '
}

# cpu_seconds <pid...>: user + system CPU of the processes, in seconds.
cpu_seconds() {
  local tck total=0 t
  tck=$(getconf CLK_TCK)
  for p in "$@"; do
    t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total $tck" | awk '{ printf "%.3f", $1 / $2 }'
}

# The CPU the database's backends used so far (they live as long as hookd's pool).
pg_backend_cpu() {
  # shellcheck disable=SC2046
  cpu_seconds $(psql "$PG_URL" -Atc "select pid from pg_stat_activity where datname = '$1'")
}

# redis_snapshot: "commands cpu_seconds" of the whole Redis server.
redis_snapshot() {
  redis-cli -u "$REDIS_URL_T" info all | tr -d '\r' | awk -F: '
    $1 == "total_commands_processed" { c = $2 } $1 == "used_cpu_sys" { s = $2 } $1 == "used_cpu_user" { u = $2 }
    END { printf "%d %.3f", c, s + u }'
}

events_total() {
  case "$1" in
    sqlite:*)
      local file=${1#sqlite://}
      if command -v sqlite3 >/dev/null; then
        sqlite3 -readonly "$file" "select count(*) from events"
      else
        python3 -c "import sqlite3,sys; print(sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True).execute('select count(*) from events').fetchone()[0])" "$file"
      fi ;;
    *) psql "$1" -Atc "select count(*) from events" ;;
  esac
}

# wait_completed <database url> <n>: waits until <n> events are completed (or the drain timeout
# passes) and prints "<completed> <time> <queries it made>".
wait_completed() {
  local c deadline
  deadline=$(($(date +%s) + PROC_DRAIN_TIMEOUT))
  POLLS=0
  while :; do
    c=$(completed "$1")
    POLLS=$((POLLS + 1))
    if [ "$c" -ge "$2" ] || [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$c $(now) $POLLS"
      return
    fi
    sleep 0.2
  done
}

# proc_phase_begin <db or ""> : snapshots before a phase (PG and Redis counters).
proc_phase_begin() {
  P_PG0="" P_R0=""
  [ -z "$1" ] || P_PG0=$(pg_snapshot "$1")
  [ "$P_PROFILE" != postgres-redis ] || P_R0=$(redis_snapshot)
}

# proc_phase_end <phase> <db or ""> <events> <seconds> <hookd cpu> <pg backend cpu> <polls>:
# the phase's facts, after hookd stopped.
proc_phase_end() {
  local phase=$1 db=$2 k="$P_KEY.$1"
  fact "$k.events" "$3"
  fact "$k.seconds" "$4"
  fact "$k.hookd_cpu_s" "$5"
  if [ -n "$db" ]; then
    wait_db_idle "$db"
    local l0 x0 i0 u0 d0 l1 x1 i1 u1 d1 wal fpi
    read -r l0 x0 i0 u0 d0 <<<"$P_PG0"
    read -r l1 x1 i1 u1 d1 <<<"$(pg_snapshot "$db")"
    read -r wal fpi <<<"$(pg_db_wal "$db" "$l0" "$l1")"
    fact "$k.pg_cpu_s" "$6"
    # The completion polls are transactions of this database too; they are not hookd's.
    fact "$k.xacts" "$((x1 - x0 - $7))"
    fact "$k.tup_inserted" "$((i1 - i0))"
    fact "$k.tup_updated" "$((u1 - u0))"
    fact "$k.tup_deleted" "$((d1 - d0))"
    fact "$k.wal_server_bytes" "$(psql "$PG_URL" -Atc "select pg_wal_lsn_diff('$l1', '$l0')::bigint")"
    [ "$wal" = - ] || { fact "$k.wal_bytes" "$wal"; fact "$k.wal_fpi_bytes" "$fpi"; }
  fi
  if [ -n "$P_R0" ]; then
    local c0 r0 c1 r1
    read -r c0 r0 <<<"$P_R0"
    read -r c1 r1 <<<"$(redis_snapshot)"
    fact "$k.redis_commands" "$((c1 - c0))"
    fact "$k.redis_cpu_s" "$(echo "$r0 $r1" | awk '{ printf "%.3f", $2 - $1 }')"
  fi
}

# proc_store <name>: a fresh store for this profile; sets P_ENV to its environment.
proc_store() {
  case "$P_PROFILE" in
    sqlite) rm -f "$WORK/$1.db"*; P_ENV="DATABASE_URL=sqlite://$WORK/$1.db" ;;
    postgres) new_pg_db "hookd_bench_$1"; P_ENV="DATABASE_URL=$PG_BASE/hookd_bench_$1" ;;
    postgres-redis)
      new_pg_db "hookd_bench_$1"
      P_ENV="DATABASE_URL=$PG_BASE/hookd_bench_$1 REDIS_URL=$REDIS_URL_T HOOKD_REDIS_PREFIX=bench_$1_$$" ;;
  esac
}

proc_store_drop() {
  case "$P_PROFILE" in
    sqlite) rm -f "$WORK/$1.db"* ;;
    *) drop_pg_db "hookd_bench_$1" ;;
  esac
  if [ "$P_PROFILE" = postgres-redis ]; then
    redis-cli -u "$REDIS_URL_T" --scan --pattern "{bench_$1_$$}:*" | xargs -r redis-cli -u "$REDIS_URL_T" del >/dev/null
  fi
}

# measure_processing <label> <hookd binary> <profile>: accept, drain and serve, as above.
measure_processing() {
  local label=$1 profile=$3 env_a env_b url_a url_b db_a="" db_b="" n t0 t1 c cpu pgcpu
  HOOKD_BIN=$2 P_PROFILE=$profile P_KEY="proc.$label.$profile"
  say "processing: hookd $label ($2), profile $profile"
  fact "$P_KEY.binary" "$2"
  fact "$P_KEY.load_average" "$(cut -d' ' -f1-3 /proc/loadavg)"
  proc_store proc_a
  env_a=$P_ENV
  proc_store proc_b
  env_b=$P_ENV
  url_a=${env_a%% *} url_a=${url_a#DATABASE_URL=}
  url_b=${env_b%% *} url_b=${url_b#DATABASE_URL=}
  if [ "$profile" != sqlite ]; then
    db_a=hookd_bench_proc_a db_b=hookd_bench_proc_b
    for url in "$url_a" "$url_b"; do
      env -i PATH="$PATH" DATABASE_URL="$url" HOOKD_CONFIG="$WORK/hookd.toml" "$HOOKD_BIN" migrate \
        >>"$OUT/logs/proc-migrate.log" 2>&1 || die "hookd migrate failed: $(tail -5 "$OUT/logs/proc-migrate.log")"
    done
    proc_hold_wal
  fi

  echo "  accept only: hookd api, closed loop, $CONCURRENCY connections, ${DURATION} s, no redeliveries"
  proc_phase_begin "$db_a"
  # shellcheck disable=SC2086
  start_hookd api "proc-$label-$profile-api" $env_a
  LOAD_DUPLICATES=0 load "proc-$label-$profile-accept" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --requests $((DURATION * 20000))
  cpu=$(cpu_seconds "$HOOKD_PID")
  pgcpu=$([ -z "$db_a" ] || pg_backend_cpu "$db_a")
  fact "$P_KEY.rss_peak_bytes" "$(rss VmHWM)"
  stop_hookd
  n=$(events_total "$url_a")
  fact "$P_KEY.accept_rps" "$(ok_rps "proc-$label-$profile-accept")"
  proc_phase_end accept "$db_a" "$n" "$(sed -n 's/.*"elapsed_s": \([0-9.]*\).*/\1/p' "$OUT/proc-$label-$profile-accept.json")" "$cpu" "$pgcpu" 1

  echo "  drain: hookd worker started on the $n accepted events, until all are completed"
  proc_phase_begin "$db_a"
  t0=$(now)
  # shellcheck disable=SC2086
  start_hookd worker "proc-$label-$profile-worker" $env_a
  read -r c t1 POLLS <<<"$(wait_completed "$url_a" "$n")"
  cpu=$(cpu_seconds "$HOOKD_PID")
  pgcpu=$([ -z "$db_a" ] || pg_backend_cpu "$db_a")
  stop_hookd
  fact "$P_KEY.drain.completed" "$c"
  echo "    $c of $n completed in $(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }') s"
  proc_phase_end drain "$db_a" "$n" "$(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')" "$cpu" "$pgcpu" "$POLLS"

  echo "  to completion: hookd serve, the same load, then until every accepted event is completed"
  proc_phase_begin "$db_b"
  # shellcheck disable=SC2086
  start_hookd serve "proc-$label-$profile-serve" $env_b
  LOAD_DUPLICATES=0 load "proc-$label-$profile-serve" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --requests $((DURATION * 20000))
  t1=$(now)
  # The clock starts at the first request, not when the load generator started preparing.
  t0=$(echo "$t1 $(sed -n 's/.*"elapsed_s": \([0-9.]*\).*/\1/p' "$OUT/proc-$label-$profile-serve.json")" | awk '{ printf "%.6f", $1 - $2 }')
  n=$(events_total "$url_b")
  read -r c t1 POLLS <<<"$(wait_completed "$url_b" "$n")"
  cpu=$(cpu_seconds "$HOOKD_PID")
  pgcpu=$([ -z "$db_b" ] || pg_backend_cpu "$db_b")
  fact "$P_KEY.rss_peak_bytes_serve" "$(rss VmHWM)"
  stop_hookd
  fact "$P_KEY.serve.completed" "$c"
  fact "$P_KEY.serve.accept_rps" "$(ok_rps "proc-$label-$profile-serve")"
  echo "    $c of $n completed $(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }') s after the first request"
  proc_phase_end serve "$db_b" "$n" "$(echo "$t0 $t1" | awk '{ printf "%.3f", $2 - $1 }')" "$cpu" "$pgcpu" $((POLLS + 1))

  proc_cleanup
  proc_store_drop proc_a
  proc_store_drop proc_b
}
