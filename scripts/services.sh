#!/usr/bin/env bash
# Makes sure the test services answer on loopback, starting what is missing:
# PostgreSQL 5432 (database `test`), Redis 6379, RabbitMQ 5672, and the SQS emulator fauxqs 4577.
set -euo pipefail
cd "$(dirname "$0")/.."

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  for _ in $(seq 1 "$3"); do up "$2" && return 0; sleep 1; done
  echo "services: $1 did not come up on 127.0.0.1:$2 within $3 s" >&2
  return 1
}

if ! up 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_port PostgreSQL 5432 60
fi
# The tests use the `test` database as user postgres.
if command -v psql >/dev/null; then
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" postgres 2>/dev/null | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" postgres >/dev/null 2>&1 || true
fi

# The Redis tests also start private servers (eviction, failover, a three-node cluster).
for bin in redis-server redis-cli; do
  if ! command -v "$bin" >/dev/null; then
    echo "services: \`$bin\` is not installed; the Redis tests start private servers with it" \
      "(Debian/Ubuntu: apt-get install redis-server)" >&2
    exit 1
  fi
done
if ! up 6379; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port Redis 6379 30
fi

if ! up 5672; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached || true
  wait_port RabbitMQ 5672 120
fi

if [ -x scripts/fauxqs/start.sh ]; then
  scripts/fauxqs/start.sh
fi
echo "services: PostgreSQL, Redis, RabbitMQ$( [ -x scripts/fauxqs/start.sh ] && echo ', fauxqs') are up"
