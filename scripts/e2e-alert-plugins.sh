#!/usr/bin/env bash
# The shipped alert plugins (misc/alert.d) driven by `overc-server test-alert`,
# and the built-in webhook notifier.
# Needs: python3 (Debian package `python3`); mail.sh is
# pointed at a fake sendmail through $SENDMAIL.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin overc-server
bin="$PWD/target/debug/overc-server"
work=$(mktemp -d)
sink=
cleanup() { [[ -n "$sink" ]] && kill "$sink" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

cp -r misc/alert.d "$work/alert.d"
cat > "$work/fake-sendmail" <<'SH'
#!/bin/sh
echo "args: $*" > "$MAIL_OUT"
cat >> "$MAIL_OUT"
SH
chmod +x "$work/fake-sendmail"

# A one-shot webhook receiver on a free port that saves the body it gets.
cat > "$work/sink.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        open(sys.argv[1], "wb").write(body)
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[2], "w").write(str(s.server_address[1]))
s.handle_request()
PY
python3 "$work/sink.py" "$work/hook.json" "$work/port" &
sink=$!
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.1; done
port=$(cat "$work/port")

cat > "$work/server.ini" <<INI
[alert:log]
command = ./alert.d/log.sh $work/alerts.log
[alert:mail]
command = ./alert.d/mail.sh ops@example.com overc@example.com
[alert:webhook]
webhook = http://127.0.0.1:$port/hook
INI

out=$(SENDMAIL="$work/fake-sendmail" MAIL_OUT="$work/mail.txt" "$bin" test-alert --config "$work/server.ini") \
    || fail "test-alert failed: $out"
for p in log mail webhook; do
    grep -qx "$p: ok" <<<"$out" || fail "plugin $p: $out"
done

grep -q '\[OK\] overc: \[overc/test\] Test alert' "$work/alerts.log" || fail "log.sh wrote: $(cat "$work/alerts.log")"
grep -q '^args: -oi -- ops@example.com$' "$work/mail.txt" || fail "mail.sh args: $(cat "$work/mail.txt")"
grep -q '^Subject: \[overc\] OK: overc overc/test$' "$work/mail.txt" || fail "mail.sh subject: $(cat "$work/mail.txt")"
grep -q '^overc: \[overc/test\] Test alert' "$work/mail.txt" || fail "mail.sh body: $(cat "$work/mail.txt")"
wait "$sink"; sink=
python3 - "$work/hook.json" <<'PY' || fail "webhook body: $(cat "$work/hook.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["server"] == "overc" and d["channel"] == "overc" and d["event"] == "test", d
assert d["text"].startswith("overc: [overc/test] Test alert"), d
PY
echo "e2e-alert-plugins: ok"
