# Sourced by scripts/test.sh and bench/run.sh: make sure PostgreSQL answers at $PG_URL and
# Redis at $REDIS_URL_T, starting them if they are not running, and fail loudly if they cannot
# be started. Needs say() and die() from the caller.

pg_up() { psql "$PG_URL" -Atqc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  say "PostgreSQL at $PG_URL"
  if ! pg_up; then
    command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not answering at $PG_URL and pg_ctlcluster is not installed (apt-get install postgresql)."
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "PostgreSQL is not answering at $PG_URL and no cluster exists under /etc/postgresql."
    echo "not answering; starting cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
    pg_up || die "PostgreSQL did not come up at $PG_URL."
  fi
  echo "up"
}

redis_up() { redis-cli -u "$REDIS_URL_T" ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  say "Redis at $REDIS_URL_T"
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    die "redis-server and redis-cli are needed: apt-get install redis-server"
  if ! redis_up; then
    echo "not answering; starting redis-server"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "${REDIS_URL_T##*:}" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 40); do redis_up && break; sleep 0.25; done
    redis_up || die "Redis did not come up at $REDIS_URL_T."
  fi
  echo "up"
}
