#!/usr/bin/env bash
# Runs every test (unit, integration, the dashboard's browser tests, a short fault drill, a short HA drill and the README's quick start) against real PostgreSQL and
# RabbitMQ, starting them first.
# This is the README's test command and what .ci/run runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash infra/prepare.sh
. infra/env.sh
log=$(mktemp)
set +e
dotnet test Throughput.sln --no-build -c Release --nologo "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# The dashboard's browser tests (skip with THROUGHPUT_BROWSER_TESTS=0).
if [ "${THROUGHPUT_BROWSER_TESTS:-1}" != 0 ]; then
  THROUGHPUT_NO_BUILD=1 bash infra/browser-tests.sh 2>&1 | tee -a "$log"
  browser_rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] || rc=$browser_rc
fi
# The fault drill, shortened: one round of each fault on scratch services of its own, every check counted (skip with
# THROUGHPUT_FAULT_DRILL=0; the full drill is bash infra/drills.sh faults).
if [ "${THROUGHPUT_FAULT_DRILL:-1}" != 0 ]; then
  THROUGHPUT_NO_BUILD=1 bash infra/drills.sh faults --rounds 1 --minutes 0.5 --down 3 --warmup 5 --settle 60 --report artifacts/drills/faults-ci.md 2>&1 | tee -a "$log"
  drill_rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] || rc=$drill_rc
fi
# The HA drill, shortened: the PostgreSQL primary of a pg_auto_failover group of its own (infra/drills/ha.sh) killed once
# under load, every check counted (skip with THROUGHPUT_HA_DRILL=0; the full drill is bash infra/drills.sh ha).
if [ "${THROUGHPUT_HA_DRILL:-1}" != 0 ]; then
  # A group created afresh: one an earlier run left behind may still be rejoining a node, and the round would wait on it.
  bash infra/drills/ha.sh drop 2>&1 | tee -a "$log"
  THROUGHPUT_NO_BUILD=1 bash infra/drills.sh ha --rounds primary --round-seconds 20 --warmup 5 --settle 60 --report artifacts/drills/ha-ci.md 2>&1 | tee -a "$log"
  ha_rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] || rc=$ha_rc
fi
# The README's quick start, run verbatim (skip with THROUGHPUT_QUICKSTART=0).
if [ "${THROUGHPUT_QUICKSTART:-1}" != 0 ]; then
  bash infra/quickstart-test.sh 2>&1 | tee -a "$log"
  quickstart_rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] || rc=$quickstart_rc
fi
# The deployment description, validated without a cluster (counts as one test).
bash infra/deploy/validate.sh 2>&1 | tee -a "$log"
deploy_rc=${PIPESTATUS[0]}
[ "$rc" -ne 0 ] || rc=$deploy_rc
set -e
# The failed tests' names and first error lines again at the end, where a truncated log still shows them.
awk '/^  Failed [A-Za-z_]/ { print; n = 6; next } n > 0 { print; n-- }' "$log"
# One closing line for all test assemblies, the browser tests, the fault and HA drills and the deployment check together.
awk '/(Passed|Failed)! +- +Failed:/ {
       gsub(/,/, ""); for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) }
     }
     /^browser tests: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ { gsub(/,/, ""); p += $3; f += $5; s += $7 }
     /^fault drill: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ { gsub(/,/, ""); p += $3; f += $5; s += $7 }
     /^ha drill: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ { gsub(/,/, ""); p += $3; f += $5; s += $7 }
     /^quick start: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ { gsub(/,/, ""); p += $3; f += $5; s += $7 }
     /^deploy: valid$/ { p += 1 }
     /^deploy: [0-9]+ problem/ { f += 1 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$rc"
