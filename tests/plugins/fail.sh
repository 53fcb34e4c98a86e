#!/bin/sh
# Alert plugin for tests that always fails, saying why on stderr.
cat > /dev/null
echo "mail server down" >&2
exit 1
