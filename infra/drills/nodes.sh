#!/usr/bin/env bash
# Scratch PostgreSQL clusters and RabbitMQ nodes for the drills (fault suite, scale-out). They run beside the shared
# services from infra/services.sh, on ports of their own, so a drill can kill and restart them while other work
# (tests, benchmarks) keeps using the shared ones. Run as root; needs the packages infra/services.sh installs.
#
#   nodes.sh rabbit-start NAME PORT     a RabbitMQ node NAME@<host> for AMQP on PORT (Erlang distribution on PORT+20000),
#                                       with the consistent-hash plugin and the vhost and user from infra/env.sh
#   nodes.sh rabbit-join NAME SEED      joins node NAME to SEED's cluster (both started)
#   nodes.sh rabbit-stop NAME           a clean stop          nodes.sh rabbit-kill NAME   SIGKILL of the node's VM
#   nodes.sh rabbit-ctl NAME ARGS…      rabbitmqctl against node NAME
#   nodes.sh rabbit-wipe NAME           stops the node and deletes its data
#   nodes.sh pg-start NAME PORT         a PostgreSQL cluster NAME on PORT with the database and role from infra/env.sh
#   nodes.sh pg-restart NAME            fast shutdown and start   nodes.sh pg-kill NAME   immediate shutdown (a crash)
#   nodes.sh pg-stop NAME               nodes.sh pg-drop NAME     stops and deletes the cluster
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../env.sh
. "$here/env.sh"
# shellcheck source=../pg-allocator.sh
. "$here/pg-allocator.sh"

base=/var/lib/throughput-drills
host=$(hostname -s)
log() { printf '[drills] %s\n' "$*" >&2; }

node_env() {
  local name=$1 port=${2:-}
  local dir="$base/rabbit/$name"
  mkdir -p "$dir"
  chown -R rabbitmq:rabbitmq "$base/rabbit"
  echo '[rabbitmq_consistent_hash_exchange,rabbitmq_management].' > "$dir/enabled_plugins"; chown rabbitmq:rabbitmq "$dir/enabled_plugins"
  export RABBITMQ_NODENAME="$name@$host"
  export RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
  if [ -n "$port" ]; then
    export RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((port + 20000))
    echo "$port" > "$dir/port"
    # The management API on AMQP port + 10000: the platform provisions serving nodes' broker users through it.
    cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$port
loopback_users = none
management.tcp.ip = 127.0.0.1
management.tcp.port = $((port + 10000))
CONF
    chown rabbitmq:rabbitmq "$dir/rabbitmq.conf" "$dir/port"
  fi
}

ctl() { local name=$1; shift; rabbitmqctl -n "$name@$host" "$@"; }
node_up() { rabbitmq-diagnostics -n "$1@$host" -q ping >/dev/null 2>&1; }

# Starts a server that outlives this script without the descriptors above 2 it inherited: a drill run under flock would
# otherwise leave the lock held by the scratch server for good.
daemon() {
  "$@" 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
}

rabbit_start() {
  local name=$1 port=$2
  node_env "$name" "$port"
  if ! node_up "$name"; then
    log "starting RabbitMQ node $name@$host on $port"
    # The Debian wrapper switches to the rabbitmq user; su keeps the RABBITMQ_* variables.
    daemon rabbitmq-server -detached
    for _ in $(seq 1 120); do node_up "$name" && break; sleep 0.5; done
    node_up "$name" || { log "node $name did not answer ping"; exit 1; }
  fi
  ctl "$name" -q await_startup
  # The vhost, user and permissions live in the node's own database: set once, they survive restarts (each rabbitmqctl
  # call takes seconds, and a drill restarts the node under load). rabbit-wipe removes the mark with the data.
  [ -f "$base/rabbit/$name/configured" ] && return
  grep -qx "$THROUGHPUT_RABBIT_VHOST" <<<"$(ctl "$name" -q list_vhosts)" || ctl "$name" -q add_vhost "$THROUGHPUT_RABBIT_VHOST"
  local users
  users=$(ctl "$name" -q list_users | awk '{print $1}')
  grep -qx "$THROUGHPUT_RABBIT_USER" <<<"$users" || ctl "$name" -q add_user "$THROUGHPUT_RABBIT_USER" "$THROUGHPUT_RABBIT_PASSWORD"
  ctl "$name" -q set_permissions -p "$THROUGHPUT_RABBIT_VHOST" "$THROUGHPUT_RABBIT_USER" ".*" ".*" ".*"
  # The platform's provisioning identity: management API only, no access to the vhost's messages.
  grep -qx "$THROUGHPUT_RABBIT_ADMIN_USER" <<<"$users" || ctl "$name" -q add_user "$THROUGHPUT_RABBIT_ADMIN_USER" "$THROUGHPUT_RABBIT_ADMIN_PASSWORD"
  ctl "$name" -q set_user_tags "$THROUGHPUT_RABBIT_ADMIN_USER" administrator
  touch "$base/rabbit/$name/configured"
}

rabbit_join() {
  local name=$1 seed=$2
  if grep -q "\"$seed@$host\"" <<<"$(ctl "$name" -q cluster_status --formatter json)"; then return; fi
  log "joining $name to $seed's cluster"
  # start_app logs transient "node_not_running" errors while the tables sync; the ping below is what counts.
  { ctl "$name" -q stop_app && ctl "$name" -q reset && ctl "$name" -q join_cluster "$seed@$host" && ctl "$name" -q start_app; } >/dev/null 2>&1 ||
    { log "node $name could not join $seed"; exit 1; }
  ctl "$name" -q await_startup
}

rabbit_stop() { node_up "$1" && { log "stopping node $1"; ctl "$1" -q stop >/dev/null; } || true; }

rabbit_kill() {
  local pidfile="$base/rabbit/$1/pid" pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then log "SIGKILL node $1 (pid $pid)"; kill -9 "$pid"; else log "node $1 is not running"; fi
}

pg_start() {
  local name=$1 port=$2 version
  version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  if ! grep -qx "$name" <<<"$(pg_lsclusters --no-header | awk '{print $2}')"; then
    log "creating PostgreSQL cluster $version/$name on $port"
    pg_createcluster "$version" "$name" --port "$port" >/dev/null
    cat > "/etc/postgresql/$version/$name/conf.d/throughput.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
max_connections = 200
synchronous_commit = on
CONF
  fi
  pg_allocator_environment > "/etc/postgresql/$version/$name/environment"
  pg_ctlcluster "$version" "$name" status >/dev/null 2>&1 || daemon pg_ctlcluster "$version" "$name" start
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 0.5; done
  su postgres -c "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$THROUGHPUT_PG_USER'\"" | grep -q 1 ||
    su postgres -c "psql -p $port -qc \"CREATE ROLE \\\"$THROUGHPUT_PG_USER\\\" LOGIN PASSWORD '$THROUGHPUT_PG_PASSWORD' CREATEDB\""
  su postgres -c "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname='$THROUGHPUT_PG_DATABASE'\"" | grep -q 1 ||
    su postgres -c "psql -p $port -qc \"CREATE DATABASE \\\"$THROUGHPUT_PG_DATABASE\\\" OWNER \\\"$THROUGHPUT_PG_USER\\\"\""
  log "PostgreSQL $name ready on 127.0.0.1:$port"
}

pg_version_of() { pg_lsclusters --no-header | awk -v n="$1" '$2 == n {print $1}'; }

case "${1:-}" in
  rabbit-start) rabbit_start "$2" "$3" ;;
  rabbit-join) rabbit_join "$2" "$3" ;;
  rabbit-stop) rabbit_stop "$2" ;;
  rabbit-kill) rabbit_kill "$2" ;;
  rabbit-ctl) name=$2; shift 2; ctl "$name" "$@" ;;
  rabbit-wipe) rabbit_stop "$2"; rm -rf "${base:?}/rabbit/$2" ;;
  pg-start) pg_start "$2" "$3" ;;
  pg-restart) daemon pg_ctlcluster "$(pg_version_of "$2")" "$2" restart -m fast ;;
  pg-kill) pg_ctlcluster "$(pg_version_of "$2")" "$2" stop -m immediate ;;
  pg-stop) pg_ctlcluster "$(pg_version_of "$2")" "$2" stop -m fast || true ;;
  pg-drop) v=$(pg_version_of "$2"); [ -n "$v" ] && pg_dropcluster --stop "$v" "$2" || true ;;
  *) sed -n '2,15p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
