#!/usr/bin/env bash
# Validates the deployment description (Kubernetes manifests and compose file) with Node, no cluster needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund --silent
node validate.mjs
