#!/bin/sh
# overc alert plugin: mails every alert through the local sendmail.
# Usage in server.ini:
#   [alert:mail]
#   command = ./alert.d/mail.sh ops@example.com
set -eu
to=${1:?usage: mail.sh RECIPIENT [FROM]}
from=${2:-overc@$(hostname -f 2>/dev/null || hostname)}
subject="[overc] ${OVERC_SEVERITY:-}: ${OVERC_SERVER:-overc}${OVERC_SERVICE:+ $OVERC_SERVICE} ${OVERC_CHANNEL:-}/${OVERC_EVENT:-}"
{
    printf 'From: %s\nTo: %s\nSubject: %s\nContent-Type: text/plain; charset=utf-8\n\n' "$from" "$to" "$subject"
    cat
} | "${SENDMAIL:-/usr/sbin/sendmail}" -oi -- "$to"
