#!/usr/bin/env bash
# The dashboard's end-to-end tests in headless Chromium: installs Debian's chromium (if missing) and the npm packages
# locked in tests/Throughput.BrowserTests, starts a platform host of their own and runs them. infra/test.sh runs this
# after the .NET tests; alone: bash infra/browser-tests.sh [test files]. Last line: "browser tests: N passed, N failed, N skipped".
set -euo pipefail
# Whatever fails before the tests run still shows in infra/test.sh's count.
trap 'echo "browser tests: 0 passed, 1 failed, 0 skipped"' ERR
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ -z "${THROUGHPUT_NO_BUILD:-}" ]; then
  bash infra/prepare.sh
fi
. infra/env.sh
if ! command -v chromium >/dev/null 2>&1; then
  echo "[browser-tests] installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cd tests/Throughput.BrowserTests
npm ci --no-audit --no-fund --loglevel=error
exec node run.mjs "$@"
