#!/bin/sh
# Alert plugin for tests: fails while the file $1 exists, else records to $2.
if [ -e "$1" ]; then
    cat > /dev/null
    echo "flag $1 is set" >&2
    exit 1
fi
exec "$(dirname "$0")/record.sh" "$2"
