#!/usr/bin/env bash
# The main job: starts PostgreSQL and RabbitMQ, builds and starts the platform host, drives the demo
# load against it, prints what the platform measured, and stops the host it started (with --keep it
# leaves the host and the customers' deployments for exploring the dashboard). "adapters" first serves one
# adapter set of 1,000 adapters instead (docs/adapters.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash infra/prepare.sh
. infra/env.sh
port=${THROUGHPUT_DEMO_PORT:-5080}
# The demo's operator key: generated per run, handed to the host as its bootstrap key, stored there hashed.
THROUGHPUT_OPERATOR_KEY=${THROUGHPUT_OPERATOR_KEY:-tpk_kdemo$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n').$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}
export THROUGHPUT_OPERATOR_KEY
export Access__BootstrapOperatorKey=$THROUGHPUT_OPERATOR_KEY
keep=false
for arg in "$@"; do [ "$arg" = --keep ] && keep=true; done
log=$(mktemp -t throughput-host.XXXX.log)
dotnet src/Throughput.Platform/bin/Release/net10.0/Throughput.Platform.dll --urls "http://127.0.0.1:$port" >"$log" 2>&1 &
host=$!
stop_host() { kill "$host" 2>/dev/null || true; wait "$host" 2>/dev/null || true; }
if $keep; then
  trap '[ $? -eq 0 ] || stop_host' EXIT
else
  trap stop_host EXIT
fi
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
  kill -0 "$host" 2>/dev/null || { echo "platform host exited; log: $log" >&2; cat "$log" >&2; exit 1; }
  sleep 0.5
done
echo "platform host ready on http://127.0.0.1:$port (log: $log)"
if [ "${1:-}" = adapters ]; then
  # bash infra/demo.sh adapters [--adapters 1000] …: one adapter set served by the batcher (docs/adapters.md)
  shift
  dotnet src/Throughput.Flywheel/bin/Release/net10.0/Throughput.Flywheel.dll adapters "http://127.0.0.1:$port" "$@"
else
  dotnet src/Throughput.Flywheel/bin/Release/net10.0/Throughput.Flywheel.dll "http://127.0.0.1:$port" "$@"
fi
if $keep; then
  mkdir -p artifacts/demo && echo "$host" > artifacts/demo/host.pid
  echo "the platform host keeps running on http://127.0.0.1:$port (pid $host, log $log); stop it with: kill \$(cat artifacts/demo/host.pid)"
fi
