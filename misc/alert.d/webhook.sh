#!/bin/sh
# overc alert plugin: POSTs every alert as JSON to a webhook with curl.
# Usage in server.ini:
#   [alert:webhook]
#   command = ./alert.d/webhook.sh https://hooks.example.com/overc
set -eu
url=${1:?usage: webhook.sh URL}
# JSON-escapes stdin-free values given as arguments (backslash, quote, control chars).
esc() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | awk 'BEGIN{ORS=""} NR>1{print "\\n"} {print}'; }
text=$(cat)
body=$(printf '{"id": "%s", "server": "%s", "service": "%s", "channel": "%s", "event": "%s", "severity": "%s", "state": "%s", "message": "%s", "text": "%s"}' \
    "$(esc "${OVERC_ALERT_ID:-}")" "$(esc "${OVERC_SERVER:-}")" "$(esc "${OVERC_SERVICE:-}")" \
    "$(esc "${OVERC_CHANNEL:-}")" "$(esc "${OVERC_EVENT:-}")" "$(esc "${OVERC_SEVERITY:-}")" \
    "$(esc "${OVERC_STATE:-}")" "$(esc "${OVERC_MESSAGE:-}")" "$(esc "$text")")
curl --silent --show-error --fail --max-time 20 -H 'Content-Type: application/json' --data-binary "$body" "$url" > /dev/null
