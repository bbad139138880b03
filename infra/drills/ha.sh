#!/usr/bin/env bash
# A highly available PostgreSQL on one machine for the HA drill and the replication benchmark: a pg_auto_failover monitor
# and two nodes, a primary and a synchronous standby, each with its own data directory and port on 127.0.0.1, beside the
# shared PostgreSQL. Hosts reach it with THROUGHPUT_PG_HOSTS=127.0.0.1:5451,127.0.0.1:5452 (infra/env.sh). Run as root:
# installs pg_auto_failover when missing and runs pg_autoctl as the postgres user (it refuses root).
#
#   ha.sh start                 creates what is missing, starts every pg_autoctl not running, waits for a primary and a
#                               secondary, creates the database and role of infra/env.sh
#   ha.sh state                 the monitor's view (pg_autoctl show state)
#   ha.sh primary | standby     the name of the node in that role now (a or b); primary: the one taking writes
#   ha.sh port NAME             the PostgreSQL port of monitor, a or b
#   ha.sh kill NAME             SIGKILL of the node's pg_autoctl and its PostgreSQL together: the machine is gone
#   ha.sh run NAME              starts the node's pg_autoctl again (an old primary rejoins as a standby)
#   ha.sh wait-primary [EXCEPT] waits until the monitor reports a primary (other than node EXCEPT) and prints its name
#   ha.sh sync on|local         synchronous_commit of infra/env.sh's role: on waits for the standby, local only for this disk
#   ha.sh stop | drop           stops everything; drop also deletes the data
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../env.sh
. "$here/env.sh"
# shellcheck source=../pg-allocator.sh
. "$here/pg-allocator.sh"

base=/var/lib/throughput-drills/ha
declare -A ports=([monitor]=5450 [a]=5451 [b]=5452)
log() { printf '[ha] %s\n' "$*" >&2; }

install() {
  command -v pg_autoctl >/dev/null && return
  log "installing pg_auto_failover"
  local packages=(postgresql-15-auto-failover pg-auto-failover-cli)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }
}

# pg_autoctl keeps its configuration and state under XDG directories: ours, inside the scratch folder.
autoctl() {
  runuser -u postgres -- env HOME="$base" XDG_CONFIG_HOME="$base/config" XDG_DATA_HOME="$base/share" XDG_RUNTIME_DIR="$base/run" \
    PATH="/usr/lib/postgresql/15/bin:$PATH" PGCONNECT_TIMEOUT=3 "${pg_allocator[@]}" pg_autoctl "$@"
}

monitor_uri="postgres://autoctl_node@127.0.0.1:${ports[monitor]}/pg_auto_failover?sslmode=disable"
pidfile() { echo "$base/$1.pid"; }
running() { local pid; pid=$(cat "$(pidfile "$1")" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }

run_node() {
  local name=$1
  running "$name" && return
  log "starting pg_autoctl $name (port ${ports[$name]})"
  # Its own session, so a kill takes pg_autoctl, its PostgreSQL and every backend at once, as a dead machine would.
  # Its output goes to its log, not to this script's: a caller reading this script's output to the end would wait forever.
  # Every other descriptor closed: a caller's lock (flock) inherited by PostgreSQL would outlive the caller for good.
  setsid bash -c "for fd in /proc/\$\$/fd/*; do n=\${fd##*/}; [ \"\$n\" -gt 2 ] && eval \"exec \$n>&-\"; done 2>/dev/null
    $(declare -p pg_allocator); $(declare -f autoctl); base=$base; autoctl run --pgdata '$base/$name'" </dev/null >>"$base/$name.log" 2>&1 &
  echo $! > "$(pidfile "$name")"
}

kill_node() {
  local name=$1 pid
  pid=$(cat "$(pidfile "$name")" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "SIGKILL $name (pg_autoctl session $pid)"
    kill -9 -- "-$pid"
    for _ in $(seq 1 50); do pgrep -s "$pid" >/dev/null || break; sleep 0.1; done
  else
    log "$name is not running"
  fi
  # PostgreSQL processes that left the session (pg_ctl starts the postmaster in one of its own) would outlive it: every
  # postgres process working in the node's data directory goes too, so nothing of the node survives.
  local proc
  for proc in /proc/[0-9]*; do
    if [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$base/$name" ] && grep -qx postgres "$proc/comm" 2>/dev/null; then kill -9 "${proc#/proc/}" 2>/dev/null || true; fi
  done
}

# The monitor's table of nodes: name, reported state, assigned state.
states() {
  runuser -u postgres -- psql -X -qAt -F ' ' -h 127.0.0.1 -p "${ports[monitor]}" -d pg_auto_failover \
    -c "select nodename, reportedstate, goalstate from pgautofailover.node order by nodeid" 2>/dev/null || true
}

role() { states | awk -v want="$1" '$2 == want && $3 == want {print $1; exit}'; }

# The node that takes writes: a primary with its standby (primary), without one (wait_primary), or alone (single).
writer() { states | awk '$2 == $3 && ($2 == "primary" || $2 == "wait_primary" || $2 == "single") {print $1; exit}'; }

wait_primary() {
  local except=${1:-} name deadline=$((SECONDS + 120))
  while [ "$SECONDS" -lt "$deadline" ]; do
    name=$(writer)
    if [ -n "$name" ] && [ "$name" != "$except" ]; then echo "$name"; return; fi
    sleep 0.2
  done
  log "no primary after 120 s"; states >&2; exit 1
}

psql_on() {
  local name=$1; shift
  runuser -u postgres -- psql -X -qAt -h 127.0.0.1 -p "${ports[$name]}" -d postgres "$@"
}

start() {
  install
  mkdir -p "$base" && chown postgres:postgres "$base"
  if [ ! -f "$base/monitor/PG_VERSION" ]; then
    log "creating the monitor on ${ports[monitor]}"
    autoctl create monitor --pgdata "$base/monitor" --pgport "${ports[monitor]}" --hostname 127.0.0.1 --auth trust --no-ssl >>"$base/monitor.log" 2>&1
  fi
  run_node monitor
  for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p "${ports[monitor]}" && break; sleep 0.2; done
  for name in a b; do
    if [ ! -f "$base/$name/PG_VERSION" ]; then
      log "creating node $name on ${ports[$name]}"
      # Clients connect with infra/env.sh's password over loopback; replication and the monitor trust loopback.
      autoctl create postgres --pgdata "$base/$name" --pgport "${ports[$name]}" --hostname 127.0.0.1 --name "$name" \
        --monitor "$monitor_uri" --auth trust --no-ssl --pgctl /usr/lib/postgresql/15/bin/pg_ctl >>"$base/$name.log" 2>&1
      cat >> "$base/$name/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
max_connections = 200
CONF
    fi
    run_node "$name"
    # The second node registers with the monitor only once the first is running alone ("single").
    if [ "$name" = a ]; then
      wait_primary >/dev/null
    fi
  done
  log "waiting for a primary and a secondary"
  local deadline=$((SECONDS + 120))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ -n "$(role primary)" ] && [ -n "$(role secondary)" ] && break
    sleep 0.2
  done
  [ -n "$(role secondary)" ] || { log "no secondary after 120 s"; states >&2; exit 1; }
  local primary
  primary=$(role primary)
  psql_on "$primary" -c "SELECT 1 FROM pg_roles WHERE rolname='$THROUGHPUT_PG_USER'" | grep -q 1 ||
    psql_on "$primary" -c "CREATE ROLE \"$THROUGHPUT_PG_USER\" LOGIN PASSWORD '$THROUGHPUT_PG_PASSWORD' CREATEDB"
  psql_on "$primary" -c "SELECT 1 FROM pg_database WHERE datname='$THROUGHPUT_PG_DATABASE'" | grep -q 1 ||
    psql_on "$primary" -c "CREATE DATABASE \"$THROUGHPUT_PG_DATABASE\" OWNER \"$THROUGHPUT_PG_USER\""
  log "primary $primary (:${ports[$primary]}), secondary $(role secondary); synchronous_standby_names = '$(psql_on "$primary" -c 'show synchronous_standby_names')'"
}

case "${1:-}" in
  start) start ;;
  state) autoctl show state --pgdata "$base/monitor" ;;
  primary) writer ;;
  standby) role secondary ;;
  port) echo "${ports[$2]}" ;;
  kill) kill_node "$2" ;;
  run) run_node "$2" ;;
  wait-primary) wait_primary "${2:-}" ;;
  sync)
    [[ "$2" =~ ^(on|local)$ ]] || { log "sync on|local"; exit 2; }
    psql_on "$(wait_primary)" -c "ALTER ROLE \"$THROUGHPUT_PG_USER\" SET synchronous_commit = '$2'" ;;
  stop) for name in a b monitor; do kill_node "$name"; done ;;
  drop) for name in a b monitor; do kill_node "$name"; done; rm -rf "${base:?}" ;;
  *) sed -n '2,18p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
