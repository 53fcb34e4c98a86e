#!/bin/sh
# Nagios-style plugin: is a process with this exact name running?
# Usage: process.sh NAME [MIN]   (MIN: fewest instances that count as OK, default 1)
name=${1:?usage: process.sh NAME [MIN]}
min=${2:-1}
count=$(pgrep -x -c -- "$name" 2>/dev/null || true)
count=${count:-0}
if [ "$count" -ge "$min" ]; then
    echo "PROCS OK: $count $name running | procs=$count;;$min:;0"
    exit 0
fi
echo "PROCS CRITICAL: $count $name running, expected at least $min | procs=$count;;$min:;0"
exit 2
