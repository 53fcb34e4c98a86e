#!/bin/sh
# Test plugin that dies by a signal.
echo "about to die"
kill -9 $$
