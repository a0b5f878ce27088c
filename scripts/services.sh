# Sourced by scripts/test.sh and bench/run.sh: make sure PostgreSQL answers at $PG_URL and
# Redis at $REDIS_URL_T (and, for the tests, RabbitMQ and NATS with JetStream on their default
# ports), starting them if they are not running, and fail loudly if they cannot be started.
# Needs say() and die() from the caller.

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

# Something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Install Debian package $1 (for $2) unless command $3 is there.
need_package() {
  command -v "$3" >/dev/null && return 0
  echo "$3 not installed; installing Debian's $1 package"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$1"; } >/dev/null ||
    die "cannot install $1 (apt-get install $1), needed by $2"
}

# RabbitMQ on 127.0.0.1:5672 with the default guest/guest user (the broker-step tests).
ensure_rabbitmq() {
  say "RabbitMQ at 127.0.0.1:5672"
  if ! port_open 5672; then
    need_package rabbitmq-server "the rabbitmq step tests" rabbitmq-server
    echo "not answering; starting rabbitmq-server"
    rabbitmq-server -detached || true
    rabbitmqctl -q --timeout 120 await_startup >/dev/null 2>&1 || true
    for _ in $(seq 1 120); do port_open 5672 && break; sleep 0.5; done
    port_open 5672 || die "RabbitMQ did not come up on 127.0.0.1:5672."
  fi
  echo "up"
}

# NATS with JetStream on 127.0.0.1:4222 (the nats step tests; they also start private servers).
ensure_nats() {
  say "NATS with JetStream at 127.0.0.1:4222"
  need_package nats-server "the nats step tests" nats-server
  if ! port_open 4222; then
    echo "not answering; starting nats-server -js"
    mkdir -p /var/lib/nats-ci
    setsid nats-server -js -a 127.0.0.1 -p 4222 -sd /var/lib/nats-ci >/var/log/nats-ci.log 2>&1 < /dev/null &
    for _ in $(seq 1 40); do port_open 4222 && break; sleep 0.25; done
    port_open 4222 || die "NATS did not come up on 127.0.0.1:4222."
  fi
  echo "up"
}
