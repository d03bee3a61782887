#!/usr/bin/env bash
# Browser tests of the example pages, in a real headless Chromium.
#
#   e2e/run.sh                              # every e2e/tests/*.test.js
#   e2e/run.sh e2e/tests/inventory.test.js  # one page
#
# Installs what a fresh machine lacks (Debian's chromium package, the npm
# packages of e2e/package-lock.json), builds each example binary the tests
# start (go build, into test-artifacts/e2e/bin), runs the tests and ends
# with "N passed, N failed"; exits non-zero on any failure. Screenshots and
# server logs land in test-artifacts/e2e/.
#
# It never downloads a browser: Playwright drives /usr/bin/chromium (or
# $CHROMIUM).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
	echo "e2e: installing chromium" >&2
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! command -v node >/dev/null; then
	echo "e2e: node (>= 20) is needed" >&2
	exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
	echo "e2e: node >= 20 is needed, found $(node --version)" >&2
	exit 1
fi

(cd e2e && npm ci --no-audit --no-fund --loglevel=error)

exec node e2e/run.js "$@"
