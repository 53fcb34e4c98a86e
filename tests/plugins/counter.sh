#!/bin/sh
# Test plugin: counts its runs in the file $1 and prints the count.
n=$(cat "$1" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$1.tmp" && mv "$1.tmp" "$1"
echo "count $n | runs=$n;;;0"
