#!/bin/sh
# Alert plugin for tests: records like record.sh, then takes a second.
"$(dirname "$0")/record.sh" "$1"
sleep 1
