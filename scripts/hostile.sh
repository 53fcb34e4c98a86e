#!/usr/bin/env bash
# Hostile input against a real overc-server while normal clients report
# (see examples/hostile.rs for the attacks and the pass criteria).
#   scripts/hostile.sh                  # 10 s of attack, 500 idle connections
#   ATTACK_SECONDS=5 scripts/hostile.sh
# Needs: nothing beyond the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
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
if grep -q "panicked" server.log; then echo "FAIL: the server panicked"; grep panicked server.log; exit 1; fi
kill -TERM "$pid"; wait "$pid" || { echo "FAIL: the server did not stop cleanly"; exit 1; }
pid=
echo "server stopped cleanly after the attack"
