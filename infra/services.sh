#!/usr/bin/env bash
# Installs (if missing), starts, stops and reports the PostgreSQL and RabbitMQ servers Throughput needs,
# on a Debian machine without systemd. Safe to run repeatedly.
#   infra/services.sh start | stop | status
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=env.sh
. "$here/env.sh"

log() { printf '[services] %s\n' "$*"; }

install_if_missing() {
  local missing=()
  command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
  command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The shared cluster: the one on THROUGHPUT_PG_PORT, "main" first. Not simply the first listed: the drills' scratch clusters
# (infra/drills/nodes.sh, e.g. 15/faults) sort before 15/main, and starting them here broke a drill that had stopped one.
pg_cluster() {
  pg_lsclusters --no-header | awk -v port="$THROUGHPUT_PG_PORT" '$3 == port {print ($2 == "main" ? 0 : 1), $1, $2}' | sort | awk 'NR==1 {print $2, $3}'
}

start_postgres() {
  local version name
  read -r version name < <(pg_cluster)
  if [ -z "${version:-}" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    name=main
    pg_createcluster "$version" "$name" >/dev/null
  fi
  # Enough connections for several hosts and test fixtures; fsync stays on (durability is the product).
  local conf="/etc/postgresql/$version/$name/conf.d/throughput.conf"
  if [ ! -f "$conf" ]; then
    cat > "$conf" <<CONF
listen_addresses = '127.0.0.1'
port = $THROUGHPUT_PG_PORT
max_connections = 300
shared_buffers = 512MB
synchronous_commit = on
CONF
  fi
  if ! pg_ctlcluster "$version" "$name" status >/dev/null 2>&1; then
    log "starting PostgreSQL $version/$name"
    pg_ctlcluster "$version" "$name" start
  fi
  for _ in $(seq 1 60); do
    pg_isready -q -h "$THROUGHPUT_PG_HOST" -p "$THROUGHPUT_PG_PORT" && break
    sleep 0.5
  done
  pg_isready -h "$THROUGHPUT_PG_HOST" -p "$THROUGHPUT_PG_PORT" >/dev/null || { log "PostgreSQL did not become ready"; exit 1; }
  local sql_user sql_db
  sql_user=$(su postgres -c "psql -p $THROUGHPUT_PG_PORT -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$THROUGHPUT_PG_USER'\"")
  if [ "$sql_user" != "1" ]; then
    su postgres -c "psql -p $THROUGHPUT_PG_PORT -qc \"CREATE ROLE \\\"$THROUGHPUT_PG_USER\\\" LOGIN PASSWORD '$THROUGHPUT_PG_PASSWORD' CREATEDB\""
  else
    su postgres -c "psql -p $THROUGHPUT_PG_PORT -qc \"ALTER ROLE \\\"$THROUGHPUT_PG_USER\\\" LOGIN PASSWORD '$THROUGHPUT_PG_PASSWORD' CREATEDB\""
  fi
  sql_db=$(su postgres -c "psql -p $THROUGHPUT_PG_PORT -tAc \"SELECT 1 FROM pg_database WHERE datname='$THROUGHPUT_PG_DATABASE'\"")
  if [ "$sql_db" != "1" ]; then
    su postgres -c "psql -p $THROUGHPUT_PG_PORT -qc \"CREATE DATABASE \\\"$THROUGHPUT_PG_DATABASE\\\" OWNER \\\"$THROUGHPUT_PG_USER\\\"\""
  fi
  log "PostgreSQL ready on $THROUGHPUT_PG_HOST:$THROUGHPUT_PG_PORT, database $THROUGHPUT_PG_DATABASE"
}

rabbit_up() { rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

start_rabbitmq() {
  if ! rabbit_up; then
    log "starting RabbitMQ"
    rabbitmq-plugins --offline enable rabbitmq_consistent_hash_exchange >/dev/null
    rabbitmq-server -detached
    # await_startup alone exits 69 while the node is still registering: ping first.
    for _ in $(seq 1 120); do rabbit_up && break; sleep 0.5; done
    rabbit_up || { log "RabbitMQ did not answer ping"; exit 1; }
  fi
  rabbitmqctl -q await_startup
  local vhosts users
  vhosts=$(rabbitmqctl -q list_vhosts)
  grep -qx "$THROUGHPUT_RABBIT_VHOST" <<<"$vhosts" || rabbitmqctl -q add_vhost "$THROUGHPUT_RABBIT_VHOST"
  users=$(rabbitmqctl -q list_users | awk '{print $1}')
  if grep -qx "$THROUGHPUT_RABBIT_USER" <<<"$users"; then
    rabbitmqctl -q change_password "$THROUGHPUT_RABBIT_USER" "$THROUGHPUT_RABBIT_PASSWORD"
  else
    rabbitmqctl -q add_user "$THROUGHPUT_RABBIT_USER" "$THROUGHPUT_RABBIT_PASSWORD"
  fi
  rabbitmqctl -q set_user_tags "$THROUGHPUT_RABBIT_USER" management
  rabbitmqctl -q set_permissions -p "$THROUGHPUT_RABBIT_VHOST" "$THROUGHPUT_RABBIT_USER" ".*" ".*" ".*"
  log "RabbitMQ ready on $THROUGHPUT_RABBIT_HOST:$THROUGHPUT_RABBIT_PORT, vhost $THROUGHPUT_RABBIT_VHOST"
}

stop_all() {
  if rabbit_up; then log "stopping RabbitMQ"; rabbitmqctl -q stop >/dev/null || true; fi
  if command -v pg_lsclusters >/dev/null 2>&1; then
    local version name
    read -r version name < <(pg_cluster) || true
    if [ -n "${version:-}" ] && pg_ctlcluster "$version" "$name" status >/dev/null 2>&1; then
      log "stopping PostgreSQL"; pg_ctlcluster "$version" "$name" stop
    fi
  fi
}

status() {
  local rc=0
  if pg_isready -q -h "$THROUGHPUT_PG_HOST" -p "$THROUGHPUT_PG_PORT" 2>/dev/null; then log "PostgreSQL: up"; else log "PostgreSQL: down"; rc=1; fi
  if rabbit_up; then log "RabbitMQ: up"; else log "RabbitMQ: down"; rc=1; fi
  return $rc
}

case "${1:-start}" in
  start) install_if_missing; start_postgres; start_rabbitmq ;;
  stop) stop_all ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
