#!/usr/bin/env bash
# The services page's script time with 10,000 services in headless Chromium
# (BENCHMARKS.md, "The page with 10,000 services"): a fresh server, the
# services pushed through the real API, then scripts/page_render.py.
# SERVICES (default 10000), REFRESHES (default 5), LIMIT_MS (default 1000).
# Needs: Debian's chromium, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
if ! command -v chromium >/dev/null; then
    echo "page-render: skipped: needs chromium (apt-get install chromium)"
    [[ "${CI:-}" == "true" ]] && exit 1
    exit 0
fi
cargo build --quiet --bin overc-server
repo=$PWD
work=$(mktemp -d)
pid=
cleanup() {
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
start_overc "$repo/target/debug/overc-server" "$work/log"
pid=$OVERC_PID
python3 "$repo/scripts/page_render.py" "$OVERC_URL" "${SERVICES:-10000}" "${REFRESHES:-5}"
