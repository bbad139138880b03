#!/usr/bin/env bash
# End-to-end benchmarks: starts PostgreSQL and RabbitMQ if needed, builds Release, and runs
# src/Throughput.Benchmarks, which starts its own platform host process (own port, own metering exchange
# and queues) and stops it again.
#   bash infra/bench.sh metering [--duration 60] [--warmup 10] …   one benchmark (list: bash infra/bench.sh list)
#   bash infra/bench.sh admission-checks | admission-http [--rate 10000] | admission-feedback   the admission path
#   bash infra/bench.sh scale [--size 1000x10] [--full]            N tenants × D deployments, end to end (≈ 20 min; not in all)
#   bash infra/bench.sh all --results bench-results.md            every benchmark, one Markdown table
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash infra/prepare.sh
. infra/env.sh
exec dotnet src/Throughput.Benchmarks/bin/Release/net10.0/Throughput.Benchmarks.dll "${@:-list}"
