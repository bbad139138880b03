#!/usr/bin/env bash
# Runs the README's quick start verbatim: the first ```bash block under "## Quick start", as one script. Part of
# infra/test.sh (skip with THROUGHPUT_QUICKSTART=0); prints one closing line that infra/test.sh counts.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
script=$(mktemp -t quickstart.XXXX.sh)
awk '/^## Quick start/ { section = 1; next }
     section && /^## / { exit }
     section && /^```bash$/ { block = 1; next }
     block && /^```$/ { exit }
     block { print }' README.md > "$script"
if [ ! -s "$script" ]; then
  echo "quick start: no bash block under '## Quick start' in README.md" >&2
  echo "quick start: 0 passed, 1 failed, 0 skipped"
  exit 1
fi
echo "[quickstart] running $(wc -l < "$script") lines from README.md"
bash -euo pipefail "$script"
rc=$?
# A failure midway leaves the kept host running: stop it, whatever the script reached.
if [ -f artifacts/demo/host.pid ]; then kill "$(cat artifacts/demo/host.pid)" 2>/dev/null || true; rm -f artifacts/demo/host.pid; fi
rm -f "$script"
echo
if [ "$rc" -eq 0 ]; then echo "quick start: 1 passed, 0 failed, 0 skipped"; else echo "quick start: 0 passed, 1 failed, 0 skipped"; fi
exit "$rc"
