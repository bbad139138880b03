#!/usr/bin/env bash
# What every entry point needs first: PostgreSQL and RabbitMQ running (installed on first use) and a Release build of
# the solution. Callers then source infra/env.sh for the connection settings.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash infra/services.sh start
. infra/env.sh
dotnet build Throughput.sln --nologo -v quiet -c Release
