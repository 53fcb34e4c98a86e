#!/bin/sh
# overc alert plugin: appends every alert to a log file.
# Usage in server.ini:
#   [alert:log]
#   command = ./alert.d/log.sh /var/log/overc/alerts.log
set -eu
file=${1:?usage: log.sh FILE}
{
    printf '%s [%s] ' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${OVERC_SEVERITY:-}"
    # Keep one alert per line: the second line (Current: ...) is joined with " | ".
    paste -sd '|' - | sed 's/|/ | /g'
} >> "$file"
