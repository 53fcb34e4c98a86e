#!/bin/sh
# Test plugin that prints 100 KiB of output.
head -c 102400 /dev/zero | tr '\0' 'x'
echo
