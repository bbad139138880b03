#!/usr/bin/env bash
# Installs (if missing), starts, stops and reports the PostgreSQL and RabbitMQ servers Throughput needs,
# on a Debian machine without systemd. Safe to run repeatedly.
#   infra/services.sh start | stop | status
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=env.sh
. "$here/env.sh"
# shellcheck source=pg-allocator.sh
. "$here/pg-allocator.sh"

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

# The cluster on THROUGHPUT_PG_PORT, else one named main: the drills' scratch clusters (infra/drills/nodes.sh) are never it.
pg_cluster() {
  pg_lsclusters --no-header | awk -v port="$THROUGHPUT_PG_PORT" '$3 == port {print $1, $2; found = 1; exit} END {if (!found) exit 1}' ||
    pg_lsclusters --no-header | awk '$2 == "main" {print $1, $2; exit}'
}

# Starts a server that outlives this script without the descriptors above 2 it inherited: run under flock (as benchmarks
# and drills are, one at a time), a server would otherwise keep the lock's descriptor, and the lock, for good.
daemon() {
  "$@" 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
}

start_postgres() {
  local version name
  read -r version name < <(pg_cluster)
  if [ -z "${version:-}" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    name=main
    pg_createcluster "$version" "$name" >/dev/null
  fi
  # Enough connections for several hosts and test fixtures; fsync stays on (durability is the product). The server
  # listens on loopback only, where TLS (Debian turns it on, and clients prefer it) costs CPU and protects nothing.
  local conf="/etc/postgresql/$version/$name/conf.d/throughput.conf" wanted
  wanted=$(cat <<CONF
listen_addresses = '127.0.0.1'
port = $THROUGHPUT_PG_PORT
max_connections = 300
shared_buffers = 512MB
synchronous_commit = on
ssl = off
CONF
)
  local changed=
  if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then printf '%s\n' "$wanted" > "$conf"; changed=1; fi
  # glibc's allocator in the server's processes (docs/operations.md, PostgreSQL's allocator): read at start only.
  local environment="/etc/postgresql/$version/$name/environment" wanted_env restart=
  wanted_env=$(pg_allocator_environment)
  if [ "$(cat "$environment" 2>/dev/null)" != "$wanted_env" ]; then printf '%s\n' "$wanted_env" > "$environment"; restart=1; fi
  if ! pg_ctlcluster "$version" "$name" status >/dev/null 2>&1; then
    log "starting PostgreSQL $version/$name"
    daemon pg_ctlcluster "$version" "$name" start
  elif [ -n "$restart" ]; then
    log "restarting PostgreSQL $version/$name for its changed environment"
    daemon pg_ctlcluster "$version" "$name" restart
  elif [ -n "$changed" ]; then
    log "reloading PostgreSQL $version/$name for changed settings (a changed port or shared_buffers needs a restart)"
    pg_ctlcluster "$version" "$name" reload
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

# A broker user with a password, tags and, when given, permissions on the vhost (configure, write, read).
rabbit_user() {
  local user=$1 password=$2 tags=$3
  local users
  # Captured first: under pipefail, grep -q closing the pipe early fails a long listing with SIGPIPE.
  users=$(rabbitmqctl -q list_users | awk '{print $1}')
  if grep -qx "$user" <<<"$users"; then
    rabbitmqctl -q change_password "$user" "$password"
  else
    rabbitmqctl -q add_user "$user" "$password"
  fi
  rabbitmqctl -q set_user_tags "$user" $tags
  if [ $# -gt 3 ]; then rabbitmqctl -q set_permissions -p "$THROUGHPUT_RABBIT_VHOST" "$user" "$4" "$5" "$6"; fi
}

start_rabbitmq() {
  # The management API listens on loopback only: the platform provisions serving nodes' broker users through it.
  local conf=/etc/rabbitmq/rabbitmq.conf wanted="management.tcp.ip = 127.0.0.1"
  if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
    mkdir -p /etc/rabbitmq && printf '%s\n' "$wanted" > "$conf"
    if rabbit_up; then log "restarting RabbitMQ for its changed configuration"; rabbitmqctl -q stop >/dev/null || true; fi
  fi
  if ! rabbit_up; then
    log "starting RabbitMQ"
    rabbitmq-plugins --offline enable rabbitmq_consistent_hash_exchange rabbitmq_management >/dev/null
    daemon rabbitmq-server -detached
    # await_startup alone exits 69 while the node is still registering: ping first.
    for _ in $(seq 1 120); do rabbit_up && break; sleep 0.5; done
    rabbit_up || { log "RabbitMQ did not answer ping"; exit 1; }
  fi
  rabbitmqctl -q await_startup
  local vhosts
  vhosts=$(rabbitmqctl -q list_vhosts)
  grep -qx "$THROUGHPUT_RABBIT_VHOST" <<<"$vhosts" || rabbitmqctl -q add_vhost "$THROUGHPUT_RABBIT_VHOST"
  # Three identities, none a serving node's: the platform's hosts (messaging), the platform's provisioning of node users
  # (management API only, no vhost access), the operator's read-only management login. Nodes get users of their own.
  rabbit_user "$THROUGHPUT_RABBIT_USER" "$THROUGHPUT_RABBIT_PASSWORD" impersonator ".*" ".*" ".*"
  rabbit_user "$THROUGHPUT_RABBIT_ADMIN_USER" "$THROUGHPUT_RABBIT_ADMIN_PASSWORD" administrator
  rabbit_user "$THROUGHPUT_RABBIT_OPERATOR_USER" "$THROUGHPUT_RABBIT_OPERATOR_PASSWORD" monitoring
  for _ in $(seq 1 60); do curl -fs -o /dev/null -u "$THROUGHPUT_RABBIT_ADMIN_USER:$THROUGHPUT_RABBIT_ADMIN_PASSWORD" "${THROUGHPUT_RABBIT_MANAGEMENT%%,*}/api/overview" && break; sleep 0.5; done
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
