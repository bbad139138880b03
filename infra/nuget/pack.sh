#!/usr/bin/env bash
# Packs the Patched.DistributedLock.Postgres metapackage into infra/nuget/feed (the local folder
# source nuget.config names). Idempotent: does nothing when the package is already there.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pkg="$here/feed/patched.distributedlock.postgres.1.3.3.nupkg"
if [ -f "$pkg" ] || [ -f "$here/feed/Patched.DistributedLock.Postgres.1.3.3.nupkg" ]; then exit 0; fi
mkdir -p "$here/feed"
dotnet pack "$here/Patched.DistributedLock.Postgres/Patched.DistributedLock.Postgres.csproj" \
  -c Release -o "$here/feed" --nologo -v quiet -p:TreatWarningsAsErrors=false
