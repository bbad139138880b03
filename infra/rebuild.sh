#!/usr/bin/env bash
# Rebuilds every projection from the event log, with the platform hosts of the schema stopped:
#   bash infra/rebuild.sh    the write-side snapshots and every read model, in one pass over the log
# (A projection's name may be given, but every projection is a member of the one pass, so all are rebuilt.)
# Uses the Release build (bash infra/bench.sh or dotnet build -c Release builds it) and the schema in THROUGHPUT_PG_SCHEMA.
#
# A rebuild is a short batch job, so it runs with two runtime settings of its own (the hosts keep the defaults): without
# the JIT's instrumented tier (TieredPGO), which recompiles thousands of methods a batch job never runs long enough to
# repay, and with workstation GC instead of server GC's per-core heaps and spinning threads on a small machine. Together
# they cut the CPU of a 100,000-event rebuild by about a third here.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$root/infra/env.sh"
dll=${THROUGHPUT_PLATFORM_DLL:-$root/src/Throughput.Platform/bin/Release/net10.0/Throughput.Platform.dll}
[ -f "$dll" ] || { echo "no platform build at $dll: run dotnet build Throughput.sln -c Release first" >&2; exit 1; }
export DOTNET_TieredPGO=${DOTNET_TieredPGO:-0}
export DOTNET_gcServer=${DOTNET_gcServer:-0}
cd "$(dirname "$dll")"
exec dotnet "$dll" rebuild-projections "$@"
