#!/usr/bin/env bash
# The tools the deploy and monitoring tests drive, beside the Python packages:
# Debian's prometheus (with promtool) and docker-compose, and the buf CLI from
# npm into ./node_modules (a client of the lab that is not ours). `make test`
# runs this first; each step is skipped when its tool is already there, so a
# second run costs nothing. The apt step needs root or sudo; the npm step, npm.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if ((${#missing[@]})); then
  echo "test-tools: installing $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')with apt-get"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u)
fi
if [ "$(node_modules/.bin/buf --version 2>/dev/null || true)" != "$BUF_VERSION" ]; then
  echo "test-tools: installing @bufbuild/buf@$BUF_VERSION into ./node_modules with npm"
  npm install --no-save --no-package-lock --no-audit --no-fund "@bufbuild/buf@$BUF_VERSION"
fi
