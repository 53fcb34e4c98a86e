#!/bin/sh
# Alert plugin for tests: appends the alert text (stdin) and its OVERC_*
# variables to the file named by $1, one record per alert.
{
    cat
    echo "env: $OVERC_CHANNEL/$OVERC_EVENT severity=$OVERC_SEVERITY server=$OVERC_SERVER service=$OVERC_SERVICE state=$OVERC_STATE id=$OVERC_ALERT_ID"
    echo "--"
} >> "$1"
