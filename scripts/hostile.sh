#!/usr/bin/env bash
# Hostile input against a real overc-server while normal clients report
# (see examples/hostile.rs for the attacks and the pass criteria).
#   scripts/hostile.sh                  # 10 s of attack, 500 idle connections
#   ATTACK_SECONDS=5 scripts/hostile.sh
#   DRIBBLERS=2000 DRIBBLE_SECONDS=15   # the dribbling phase (scripts/dribble.py)
# Needs: the Rust toolchain; python3 for the dribbling phase (skipped without).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
repo=$PWD
cargo build --release --quiet --bin overc-server --example hostile
R="$PWD/target/release"
work=$(mktemp -d)
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
start_overc "$R/overc-server" server.log
pid=$OVERC_PID url=$OVERC_URL
"$R/examples/hostile" --url "$url" --pid "$pid" --seconds "${ATTACK_SECONDS:-10}" --idle "${IDLE:-500}"
# Dribbling clients: each sends a byte of its headers per second, more of
# them than max-connections (1,024). The server's threads stay bounded, the
# dribblers are cut off after client-timeout (10 s), and a normal client on
# its keep-alive connection keeps its latency.
if command -v python3 >/dev/null; then
    echo "== dribbling clients: ${DRIBBLERS:-2000} for ${DRIBBLE_SECONDS:-15} s"
    timeout 120 python3 "$repo/scripts/dribble.py" "$url" "$pid" \
        --clients "${DRIBBLERS:-2000}" --seconds "${DRIBBLE_SECONDS:-15}"
else
    echo "python3 not found: dribbling phase skipped"
fi
if grep -q "panicked" server.log; then echo "FAIL: the server panicked"; grep panicked server.log; exit 1; fi
kill -TERM "$pid"; wait "$pid" || { echo "FAIL: the server did not stop cleanly"; exit 1; }
pid=
echo "server stopped cleanly after the attack"
