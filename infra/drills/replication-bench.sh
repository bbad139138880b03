#!/usr/bin/env bash
# What synchronous replication costs metering: the metering benchmark against the failover group of infra/drills/ha.sh,
# alternating synchronous_commit on (a commit waits until the standby has it) and local (it does not) in one run —
# on, local, on, local — so drift in the shared machine's load falls on both. Each run starts a host of its own, whose
# new sessions take the role's setting. Run as root; prints one table at the end and leaves synchronous_commit on.
#   bash infra/drills/replication-bench.sh [metering options, default --duration 20]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
[ -n "${THROUGHPUT_NO_BUILD:-}" ] || bash infra/prepare.sh
export THROUGHPUT_PG_HOSTS=127.0.0.1:5451,127.0.0.1:5452
. infra/env.sh
bash infra/drills/ha.sh start
out=artifacts/replication-bench/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out"
trap 'bash infra/drills/ha.sh sync on' EXIT
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--duration 20)
n=0
for mode in on local on local; do
  n=$((n + 1))
  bash infra/drills/ha.sh sync "$mode"
  primary=$(bash infra/drills/ha.sh primary)
  setting=$(PGPASSWORD=$THROUGHPUT_PG_PASSWORD psql -X -qAt -h 127.0.0.1 -p "$(bash infra/drills/ha.sh port "$primary")" -U "$THROUGHPUT_PG_USER" -d "$THROUGHPUT_PG_DATABASE" -c 'show synchronous_commit')
  echo "== run $n: synchronous_commit=$setting on primary $primary ==" | tee "$out/$n-$mode.txt"
  # A target not met (exit 1) is a figure to compare, not a reason to stop alternating.
  dotnet src/Throughput.Benchmarks/bin/Release/net10.0/Throughput.Benchmarks.dll metering "${args[@]}" | tee -a "$out/$n-$mode.txt" || true
done
echo
echo "| run | synchronous_commit | durable records/s | publish→durable p50 | p99 | exactly once |"
echo "|---:|---|---:|---:|---:|---|"
for f in "$out"/*.txt; do
  run=$(basename "$f" .txt)
  value() { grep -m1 -F "$1" "$f" | sed -E 's/ *target.*//; s/.*  +//'; }
  echo "| ${run%%-*} | ${run#*-} | $(value 'durable records/s (usage events in PostgreSQL)') | $(value 'publish→durable p50, upper bound') | $(value 'publish→durable p99, upper bound') | $(value 'exactly once: confirmed = counted') |"
done | tee "$out/summary.md"
