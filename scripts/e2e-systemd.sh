#!/usr/bin/env bash
# The systemd units of misc/systemd and the README's install steps:
# - no restart loop on a bad config (the binaries exit 2 on config errors);
# - every sandbox option `systemd-analyze security` weighs is either set or
#   named in a comment saying why it is left out;
# - the sendmail drop-in turns off every option that implies NoNewPrivileges;
# - the monitor reads a root:overc 0640 config, and the README installs the
#   configs (they hold my-key and the [ui] password) that way;
# - `systemd-analyze verify` on the units and the drop-in, and the exposure
#   figures of `systemd-analyze security --offline=yes` (skipped, with the
#   reason, where systemd-analyze is missing: Debian package `systemd`).
# Builds nothing and starts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "FAIL: $*"; exit 1; }

server=misc/systemd/overc-server.service
monitor=misc/systemd/overcli-monitor@.service
dropin=misc/systemd/overc-server.service.d/sendmail.conf
readme=README.md

# The value of KEY= in a unit (the last assignment wins, as in systemd).
value() { sed -n "s/^$2=//p" "$1" | tail -1; }

for u in "$server" "$monitor"; do
    [[ "$(value "$u" RestartPreventExitStatus)" == 2 ]] ||
        fail "$u: needs RestartPreventExitStatus=2 (the binaries exit 2 on a bad config)"
    [[ "$(value "$u" ProtectSystem)" == strict ]] || fail "$u: needs ProtectSystem=strict"
    for o in NoNewPrivileges ProtectHome PrivateTmp PrivateDevices ProtectKernelTunables \
        ProtectKernelModules ProtectKernelLogs ProtectControlGroups ProtectClock ProtectHostname \
        ProtectProc ProcSubset PrivateUsers PrivateNetwork IPAddressDeny RestrictAddressFamilies \
        RestrictNamespaces LockPersonality MemoryDenyWriteExecute RestrictRealtime RestrictSUIDSGID \
        SystemCallArchitectures SystemCallFilter CapabilityBoundingSet UMask; do
        grep -q "^$o=" "$u" || grep -q "^#.*\b$o\b" "$u" ||
            fail "$u: $o is neither set nor explained in a comment"
    done
done
value "$server" ReadWritePaths | grep -qw /var/lib/overc ||
    fail "$server: ProtectSystem=strict needs ReadWritePaths for the database folder"

# For a service that does not run as root, systemd implies NoNewPrivileges=yes
# from each of these (execute.c, context_has_seccomp), and then the setgid
# postdrop of postfix's sendmail cannot work: the drop-in must undo each one
# the unit sets.
grep -q postdrop "$server" || fail "$server: the sendmail/NoNewPrivileges caveat is not documented"
grep -q "overc-server.service.d/sendmail.conf" "$readme" || fail "$readme: the sendmail drop-in is not documented"
for o in NoNewPrivileges LockPersonality MemoryDenyWriteExecute PrivateDevices ProtectClock \
    ProtectHostname ProtectKernelTunables ProtectKernelModules ProtectKernelLogs \
    RestrictAddressFamilies RestrictNamespaces RestrictRealtime RestrictSUIDSGID \
    SystemCallArchitectures SystemCallFilter SystemCallLog RestrictFileSystems; do
    set_to=$(value "$server" "$o")
    [[ -z "$set_to" || "$set_to" == no ]] && continue
    reset=$(value "$dropin" "$o")
    [[ "$(grep -c "^$o=" "$dropin")" -ge 1 && ( -z "$reset" || "$reset" == no ) ]] ||
        fail "$dropin: $o=$set_to of the unit implies NoNewPrivileges; reset it ($o= or $o=no)"
done
value "$dropin" ReadWritePaths | grep -qw /var/spool/postfix/maildrop ||
    fail "$dropin: postdrop writes /var/spool/postfix/maildrop, read-only under ProtectSystem=strict"

# The monitor's config holds the host's key: root:overc 0640, read through
# the group by the unit's dynamic user.
[[ "$(value "$monitor" SupplementaryGroups)" == overc ]] ||
    fail "$monitor: a DynamicUser cannot read a root:overc 0640 config without SupplementaryGroups=overc"
if grep -Eq 'cp [^#]*misc/(monitor|server)\.ini' "$readme"; then
    fail "$readme: a config is installed with cp (world-readable key or password): $(grep -E 'cp [^#]*misc/(monitor|server)\.ini' "$readme")"
fi
for f in monitor server; do
    grep -Eq "install -m 0640 -o root -g overc misc/$f\.ini /etc/overc/" "$readme" ||
        fail "$readme: misc/$f.ini should be installed with install -m 0640 -o root -g overc"
done
grep -q 'groupadd --system --force overc' "$readme" || fail "$readme: the overc group is not created"
echo "units and README: ok"

if ! command -v systemd-analyze >/dev/null; then
    echo "e2e-systemd: systemd-analyze skipped: not installed (apt-get install systemd)"
    echo "e2e-systemd: ok"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# verify refuses a unit whose ExecStart is missing: the copies run stand-ins.
mkdir -p "$work/bin" "$work/plain" "$work/mail/overc-server.service.d"
for b in overc-server overcli; do
    printf '#!/bin/sh\n' > "$work/bin/$b"
    chmod +x "$work/bin/$b"
done
for d in plain mail; do
    for u in "$server" "$monitor"; do
        sed "s|/usr/local/bin/|$work/bin/|" "$u" > "$work/$d/$(basename "$u")"
    done
done
cp "$dropin" "$work/mail/overc-server.service.d/"

for d in plain mail; do
    for u in overc-server.service overcli-monitor@.service; do
        [[ $d == mail && $u != overc-server.service ]] && continue
        # Lines about other units (targets of this machine) are not ours to judge.
        out=$(cd "$work/$d" && systemd-analyze verify "./$u" 2>&1) || fail "systemd-analyze verify $d/$u: $out"
        ours=$(grep -F "${u%@.service}" <<<"$out" || true)
        [[ -z "$ours" ]] || fail "systemd-analyze verify $d/$u: $ours"
    done
done
echo "systemd-analyze verify: ok"

# Exposure, 0 (locked down) to 10 (exposed). Measured with systemd 252: the
# server 1.4 (8.5 before the sandbox), the monitor 1.7 (8.3); the server with
# the sendmail drop-in 5.6. The bound leaves room for newer systemd versions
# weighing more options.
exposure() {
    (cd "$1" && systemd-analyze security --offline=yes "./$2" 2>/dev/null) |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
for case in "plain overc-server.service 3.0" "plain overcli-monitor@.service 3.0" \
    "mail overc-server.service 7.0"; do
    read -r d u bound <<<"$case"
    e=$(exposure "$work/$d" "$u" || true)
    if [[ -z "$e" ]]; then
        echo "e2e-systemd: exposure skipped: systemd-analyze security --offline=yes does not work here"
        break
    fi
    label=$u
    [[ $d == mail ]] && label="$u with sendmail.conf"
    echo "exposure of $label: $e (at most $bound)"
    awk -v e="$e" -v b="$bound" 'BEGIN { exit !(e <= b) }' || fail "exposure of $label is $e, above $bound"
done
echo "e2e-systemd: ok"
