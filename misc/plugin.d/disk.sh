#!/bin/sh
# Disk space through Debian's check_disk (package monitoring-plugins-basic).
# Usage: disk.sh [PATH] [WARN%] [CRIT%]
path=${1:-/}
exec /usr/lib/nagios/plugins/check_disk -w "${2:-10}%" -c "${3:-5}%" -p "$path"
