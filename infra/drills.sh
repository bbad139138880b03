#!/usr/bin/env bash
# Drills: what the platform does when its parts fail. Installs and builds like infra/bench.sh, then runs a drill of
# src/Throughput.Benchmarks against scratch services of its own (infra/drills/nodes.sh): it kills and restarts those,
# never the shared PostgreSQL and RabbitMQ, which other work keeps using meanwhile. Run as root.
#   bash infra/drills.sh faults [--rounds 2] [--minutes 4] [--down 10] [--long-down 40] [--report file.md]   (options: bash infra/drills.sh list)
#   bash infra/drills.sh ha [--rounds primary,standby,monitor] [--round-seconds 60] [--report file.md]   (PostgreSQL failover: infra/drills/ha.sh)
# The fault drill prints "fault drill: N passed, N failed, N skipped", the HA drill "ha drill: …"; each exits non-zero if
# anything was lost or double-counted; infra/test.sh runs shortened forms (THROUGHPUT_NO_BUILD=1 skips the preamble there).
set -euo pipefail
count_line=$([ "${1:-}" = ha ] && echo "ha drill" || echo "fault drill")
trap 'echo "$count_line: 0 passed, 1 failed, 0 skipped"' ERR
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ -z "${THROUGHPUT_NO_BUILD:-}" ]; then
  bash infra/prepare.sh # also installs the PostgreSQL and RabbitMQ packages the scratch services run from
fi
# The scratch cluster and node "faults" on ports of their own; the host and the serving SDK read them from infra/env.sh's variables.
export THROUGHPUT_PG_PORT=5442 THROUGHPUT_RABBIT_PORT=5711 THROUGHPUT_RABBIT_MANAGEMENT=http://127.0.0.1:15711 THROUGHPUT_PG_SCHEMA=throughput_faults
# The HA drill's database is the failover group of infra/drills/ha.sh (it shares the scratch broker, and so the lock).
[ "${1:-}" != ha ] || export THROUGHPUT_PG_HOSTS=127.0.0.1:5451,127.0.0.1:5452 THROUGHPUT_PG_SCHEMA=throughput_ha
. infra/env.sh
trap - ERR
set +e
# One drill at a time on these services: a second one would kill the first one's broker and database. -o keeps the lock
# out of what the drill starts (the scratch broker and database outlive it and would hold the lock for good).
flock -o /tmp/throughput-drill-faults.lock dotnet src/Throughput.Benchmarks/bin/Release/net10.0/Throughput.Benchmarks.dll "${@:-list}"
rc=$?
# 0: every check passed, 1: some failed (the drill counted them); anything else: it did not get as far as counting.
[ "$rc" -le 1 ] || echo "$count_line: 0 passed, 1 failed, 0 skipped"
exit "$rc"
