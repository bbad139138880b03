#!/usr/bin/env bash
# Scale-out drill (issue 8, point 3): starts the shared services if needed (PostgreSQL holds the drill's own schema,
# dropped at the end; the shared RabbitMQ is not used), builds Release, starts a three-node RabbitMQ cluster of its own
# (infra/drills/nodes.sh: scale-a, scale-b, scale-c on 5721-5723, fresh every run), and runs the scale-out drill: two
# metering hosts sharing quorum partition queues, two API hosts, load from the serving SDK; it SIGKILLs a metering host
# and a broker node and checks that the partitions move and every confirmed record is counted and billed once. Stops the
# cluster at the end. Exits non-zero if the partitions did not move or a count is off. Run as root.
#   bash infra/scale-out.sh [--minutes 3] [--report scale-out.md] [--rate 20000] [any option of: Throughput.Benchmarks list]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
nodes=(scale-a:5721 scale-b:5722 scale-c:5723)

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --report) args+=(--results "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

bash infra/prepare.sh
. infra/env.sh

stop_cluster() {
  # The seed last, so a later start finds the node that went down last first.
  for ((i = ${#nodes[@]} - 1; i >= 0; i--)); do bash infra/drills/nodes.sh rabbit-stop "${nodes[$i]%%:*}" || true; done
}
trap stop_cluster EXIT

# A fresh cluster: left-over queues or membership from an earlier (interrupted) run would change what the drill sees.
for node in "${nodes[@]}"; do bash infra/drills/nodes.sh rabbit-wipe "${node%%:*}"; done
for node in "${nodes[@]}"; do bash infra/drills/nodes.sh rabbit-start "${node%%:*}" "${node##*:}"; done
seed=${nodes[0]%%:*}
for node in "${nodes[@]:1}"; do bash infra/drills/nodes.sh rabbit-join "${node%%:*}" "$seed"; done

status=0
dotnet src/Throughput.Benchmarks/bin/Release/net10.0/Throughput.Benchmarks.dll scale-out \
  --nodes "$(IFS=,; echo "${nodes[*]}")" "${args[@]}" || status=$?
exit "$status"
