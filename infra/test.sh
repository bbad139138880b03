#!/usr/bin/env bash
# Runs every test (unit and integration) against real PostgreSQL and RabbitMQ, starting them first.
# This is the README's test command and what .ci/run runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash infra/services.sh start
. infra/env.sh
bash infra/nuget/pack.sh
dotnet restore Throughput.sln --nologo -v quiet
dotnet build Throughput.sln --no-restore --nologo -v quiet -c Release
log=$(mktemp)
set +e
dotnet test Throughput.sln --no-build -c Release --nologo "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for all test assemblies together.
awk '/(Passed|Failed)! +- +Failed:/ {
       gsub(/,/, ""); for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$rc"
