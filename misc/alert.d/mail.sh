#!/bin/sh
# overc alert plugin: mails every alert through the local sendmail.
# Usage in server.ini:
#   [alert:mail]
#   command = ./alert.d/mail.sh ops@example.com [FROM]
# The sendmail run is $SENDMAIL, else the first `sendmail` on PATH, else
# /usr/sbin/sendmail. Under the shipped systemd unit, postfix's sendmail needs
# misc/systemd/overc-server.service.d/sendmail.conf (see README).
set -eu
to=${1:?usage: mail.sh RECIPIENT [FROM]}
from=${2:-overc@$(hostname -f 2>/dev/null || hostname)}
sendmail=${SENDMAIL:-$(command -v sendmail 2>/dev/null || echo /usr/sbin/sendmail)}
subject="[overc] ${OVERC_SEVERITY:-}: ${OVERC_SERVER:-overc}${OVERC_SERVICE:+ $OVERC_SERVICE} ${OVERC_CHANNEL:-}/${OVERC_EVENT:-}"

# Header text must be printable ASCII (RFC 5322). Anything else, a Unicode
# server or service name, or a control character that would otherwise start a
# forged header line, goes as RFC 2047 Q-encoded words of UTF-8: at most 52
# characters inside each, so with "Subject: " a line stays within the 76 that
# RFC 2047 allows; a character's bytes are never split between two words; the
# words are on folded lines (the space that starts a line is not part of the text).
header_text() {
    # Counted in bytes: a newline must be caught too, whatever the locale.
    if [ "$(printf '%s' "$1" | LC_ALL=C tr -d ' -~' | wc -c)" -eq 0 ]; then
        printf '%s' "$1"
        return
    fi
    printf '%s' "$1" | od -An -v -tx1 | LC_ALL=C awk '
        BEGIN { hex = "0123456789abcdef"; n = 0 }
        { for (i = 1; i <= NF; i++) {
            v = (index(hex, substr($i, 1, 1)) - 1) * 16 + index(hex, substr($i, 2, 1)) - 1
            if ((v >= 48 && v <= 57) || (v >= 65 && v <= 90) || (v >= 97 && v <= 122) ||
                v == 33 || v == 42 || v == 43 || v == 45 || v == 47)
                e = sprintf("%c", v)
            else if (v == 32)
                e = "_"
            else
                e = "=" toupper($i)
            # 10xxxxxx continues the character before it.
            if (v >= 128 && v < 192 && n > 0) char[n] = char[n] e
            else char[++n] = e
        } }
        END {
            word = ""
            for (i = 1; i <= n; i++) {
                if (length(word) + length(char[i]) > 52) {
                    printf "=?UTF-8?Q?%s?=\n ", word
                    word = ""
                }
                word = word char[i]
            }
            printf "=?UTF-8?Q?%s?=", word
        }'
}

# An 8bit body may hold neither NUL nor bare CR, nor lines over 998 octets
# (RFC 5322, RFC 2045): CR and NUL are dropped, and longer lines (a plugin's
# info can be 16 KiB on one line) are broken before 990 octets, never inside
# a UTF-8 character.
body_text() {
    tr -d '\000\r' | LC_ALL=C awk '{
        line = $0
        while (length(line) > 990) {
            cut = 990
            while (cut > 1 && substr(line, cut + 1, 1) >= "\200" && substr(line, cut + 1, 1) < "\300")
                cut--
            print substr(line, 1, cut)
            line = substr(line, cut + 1)
        }
        print line
    }'
}

{
    printf 'From: %s\nTo: %s\nSubject: %s\n' "$from" "$to" "$(header_text "$subject")"
    printf 'MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n'
    # RFC 3834: no vacation or out-of-office replies to a machine's mail.
    printf 'Auto-Submitted: auto-generated\n\n'
    body_text
} | "$sendmail" -oi -- "$to"
