#!/bin/sh
# Alert plugin for tests that never finishes (and starts a child that would not either).
sleep 600 &
sleep 600
