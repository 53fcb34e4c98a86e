#!/usr/bin/env bash
# misc/alert.d/mail.sh with a fake `sendmail` first on PATH that captures its
# arguments and stdin: MIME headers, an RFC 2047 encoded Subject for
# non-ASCII names (checked by Python's email parser), no header forged by a
# newline in a name, body lines within 998 octets without a split character.
# Needs python3 (skipped, with the reason, without it); builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "e2e-mail: skipped: needs python3"; exit 0; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir "$work/bin"
cat > "$work/bin/sendmail" <<'SH'
#!/bin/sh
printf 'args: %s\n' "$*" > "$MAIL_OUT"
cat >> "$MAIL_OUT"
SH
chmod +x "$work/bin/sendmail"

# mail NAME SERVER SERVICE < TEXT: runs mail.sh as the server would, found
# sendmail on PATH, leaves what it was given in $work/NAME.
mail() {
    env -u SENDMAIL PATH="$work/bin:$PATH" MAIL_OUT="$work/out-$1" \
        OVERC_SEVERITY=FAIL OVERC_SERVER="$2" OVERC_SERVICE="$3" \
        OVERC_CHANNEL=service:state OVERC_EVENT=FAIL \
        misc/alert.d/mail.sh ops@example.com overc@example.com
}

printf 'web1.münchen диск: [service:state/FAIL] State changed: "OK" -> "FAIL"\nCurrent: FAIL: 東京 ✓\n' > "$work/text"
mail unicode "web1.münchen" "диск / 東京 ✓ and a long tail to need more than one word" < "$work/text"
printf 'plain text\n' | mail ascii web1 disk
printf 'x\n' | mail forged web1 "$(printf 'disk\nBcc: victim@example.com')"
python3 -c 'import sys; sys.stdout.write("é" * 700 + "a" + "€" * 400 + "\n")' > "$work/long"
mail long web1 disk < "$work/long"

python3 - "$work" <<'PY' || fail "see above"
import email, email.policy, sys
work = sys.argv[1]

def load(name):
    raw = open(f"{work}/out-{name}", "rb").read()
    args, _, msg = raw.partition(b"\n")
    assert args == b"args: -oi -- ops@example.com", args
    head, _, body = msg.partition(b"\n\n")
    return head, body, email.message_from_bytes(msg, policy=email.policy.default)

head, body, m = load("unicode")
assert m["MIME-Version"] == "1.0", m["MIME-Version"]
assert m.get_content_type() == "text/plain" and m.get_content_charset() == "utf-8", m["Content-Type"]
assert m["Content-Transfer-Encoding"] == "8bit", m["Content-Transfer-Encoding"]
assert m["Auto-Submitted"] == "auto-generated"
want = "[overc] FAIL: web1.münchen диск / 東京 ✓ and a long tail to need more than one word service:state/FAIL"
assert str(m["Subject"]) == want, (str(m["Subject"]), want)
for line in head.split(b"\n"):
    assert line.isascii(), f"header not ASCII: {line!r}"
    assert len(line) <= 76, f"header line over 76: {line!r}"
assert head.count(b"=?UTF-8?Q?") >= 2, head
assert body == open(f"{work}/text", "rb").read(), body
assert m.get_content() == open(f"{work}/text", encoding="utf-8").read()

head, body, m = load("ascii")
assert b"\nSubject: [overc] FAIL: web1 disk service:state/FAIL\n" in head, head
assert body == b"plain text\n", body

head, body, m = load("forged")
assert "Bcc" not in m, m.items()
assert str(m["Subject"]) == "[overc] FAIL: web1 disk\nBcc: victim@example.com service:state/FAIL", str(m["Subject"])

head, body, m = load("long")
lines = body.split(b"\n")
assert all(len(l) <= 998 for l in lines), [len(l) for l in lines]
assert len(lines) > 2, "the long line was not broken"
for l in lines:
    l.decode("utf-8")  # no character cut in two
assert b"".join(lines) + b"\n" == open(f"{work}/long", "rb").read()
print("mail.sh: MIME headers, encoded subject, no forged header, long lines broken")
PY
echo "e2e-mail: ok"
