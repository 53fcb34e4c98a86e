#!/usr/bin/env python3
"""Helpers of scripts/e2e-cluster.sh (standard library only).

  cluster.py stream --urls U1,U2,U3 --prefix P --rate R --duration S --out FILE
      A stream of alerts spread over the servers, one request each in turn:
      a status report of a new service in FAIL (an alert "State changed"),
      then a message to /api/set/alerts, and so on; a refused connection is
      tried again on the next server (nothing was sent). Every request answered
      200 is written to FILE as `status<TAB>HOST<TAB>SERVICE` or
      `alert<TAB>HOST<TAB>MESSAGE`; prints what it sent and got.
  cluster.py leader URL
      The listen address of the leader that URL's /ui/api/status/ shows.
  cluster.py acked --acks FILE --alerts FILE
      Every alert the stream got 200 for is in the alert list FILE (rows of
      `psql -At -F TAB`: id, host, service, channel, event, message).
  cluster.py deliveries --alerts FILE --plugin NAME=LOG... [--max-dups N]
                        [--killed-pid PID] [--in-flight ID]
      What each plugin received (its LOG has `ALERT_ID PID TIME` per run, PID
      the overc-server that ran it) against the alert list: every alert at
      least once, at most N alerts twice per plugin, each of them once by
      the killed server and once by another (in flight at the kill), none
      more than twice; with --in-flight, no alert but ID twice.
"""

import argparse
import http.client
import json
import sys
import time
from collections import defaultdict


def conn_for(url):
    host = url.removeprefix("http://").rstrip("/")
    return http.client.HTTPConnection(host, timeout=15)


def stream(a):
    urls = a.urls.split(",")
    conns = {}
    sent = acked = errors = refused = 0
    codes = defaultdict(int)
    n = 0
    every = 1.0 / a.rate
    start = time.monotonic()
    end = start + a.duration
    with open(a.out, "a") as out:
        while time.monotonic() < end:
            host = f"{a.prefix}-h{n % 4}"
            if n % 2 == 0:
                service = f"s{n}"
                path = "/api/set/service/status"
                body = {"server": {"name": host, "key": "k"}, "period": 3600,
                        "services": [{"name": service, "state": "FAIL", "info": f"{a.prefix} {n}"}]}
                line = f"status\t{host}\t{service}"
            else:
                message = f"{a.prefix} message {n}"
                path = "/api/set/alerts"
                body = {"server": {"name": host, "key": "k"},
                        "alerts": [{"message": message, "severity": "WARN"}]}
                line = f"alert\t{host}\t{message}"
            sent += 1
            # A server that refuses the connection (it died) is skipped for
            # the next one, as a load balancer would: nothing was sent.
            for k in range(len(urls)):
                url = urls[(n + k) % len(urls)]
                try:
                    c = conns.get(url) or conn_for(url)
                    conns[url] = c
                    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                    r = c.getresponse()
                    r.read()
                    codes[r.status] += 1
                    if r.status == 200:
                        acked += 1
                        out.write(line + "\n")
                        out.flush()
                    break
                except ConnectionRefusedError:
                    refused += 1
                    conns.pop(url, None)
                except (OSError, http.client.HTTPException):
                    errors += 1
                    conns.pop(url, None)
                    break
            n += 1
            # An even pace, whatever the answers took.
            pause = start + n * every - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    shown = ",".join(f"{c}:{k}" for c, k in sorted(codes.items()))
    print(f"sent={sent} acked={acked} errors={errors} refused={refused} codes={shown}")


def leader(a):
    try:
        c = conn_for(a.url)
        c.request("GET", "/ui/api/status/")
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status == 200:
            print((json.loads(body)["stats"].get("leader") or {}).get("listen", ""))
    except (OSError, http.client.HTTPException, ValueError):
        pass


def read_alerts(path):
    alerts = []
    with open(path) as f:
        for row in f:
            cols = row.rstrip("\n").split("\t")
            if len(cols) >= 6:
                alerts.append({"id": int(cols[0]), "host": cols[1], "service": cols[2],
                               "channel": cols[3], "event": cols[4], "message": cols[5]})
    return alerts


def acked(a):
    alerts = read_alerts(a.alerts)
    services = {(x["host"], x["service"]) for x in alerts if x["event"] == "FAIL"}
    messages = {(x["host"], x["message"]) for x in alerts if x["channel"] == "api"}
    n = missing = 0
    with open(a.acks) as f:
        for row in f:
            kind, host, what = row.rstrip("\n").split("\t")
            n += 1
            found = (host, what) in (services if kind == "status" else messages)
            if not found:
                missing += 1
                if missing <= 5:
                    print(f"  acknowledged with 200 but not in the alert list: {kind} {host} {what}")
    print(f"stream: {n} acknowledged alerts, {missing} missing from the database")
    return 1 if missing else 0


def deliveries(a):
    alerts = read_alerts(a.alerts)
    ids = {x["id"] for x in alerts}
    failed = 0
    twice = []
    for spec in a.plugin:
        name, log = spec.split("=", 1)
        runs = defaultdict(list)
        with open(log) as f:
            for row in f:
                cols = row.split()
                if len(cols) >= 2 and int(cols[0]) in ids:
                    runs[int(cols[0])].append(cols[1])
        missing = sorted(ids - runs.keys())
        dups = {i: pids for i, pids in runs.items() if len(pids) > 1}
        twice.append(f"{name}={len(dups)}")
        print(f"plugin {name}: {len(ids)} alerts, {sum(map(len, runs.values()))} runs, "
              f"{len(missing)} missing, {len(dups)} delivered twice or more")
        if missing:
            print(f"  FAIL: never delivered to {name}: alerts {missing[:10]}")
            failed = 1
        if len(dups) > a.max_dups:
            print(f"  FAIL: {len(dups)} duplicates, more than {a.max_dups}: {dict(list(dups.items())[:10])}")
            failed = 1
        for i, pids in dups.items():
            in_flight = len(pids) == 2 and a.killed_pid in pids and any(p != a.killed_pid for p in pids)
            in_flight = in_flight and a.in_flight in (0, i)
            if in_flight:
                print(f"  alert {i} twice: by the killed server (pid {a.killed_pid}) and by pid "
                      f"{[p for p in pids if p != a.killed_pid][0]} (in flight at the kill)")
            else:
                print(f"  FAIL: alert {i} delivered {len(pids)} times, by pids {pids}")
                failed = 1
    print(f"duplicates: {' '.join(twice)}")
    return failed


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stream")
    s.add_argument("--urls", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--rate", type=float, default=20)
    s.add_argument("--duration", type=float, default=5)
    s.add_argument("--out", required=True)
    s = sub.add_parser("leader")
    s.add_argument("url")
    s = sub.add_parser("acked")
    s.add_argument("--acks", required=True)
    s.add_argument("--alerts", required=True)
    s = sub.add_parser("deliveries")
    s.add_argument("--alerts", required=True)
    s.add_argument("--plugin", action="append", required=True)
    s.add_argument("--max-dups", type=int, default=0)
    s.add_argument("--killed-pid", default="")
    s.add_argument("--in-flight", type=int, default=0)
    a = p.parse_args()
    return {"stream": stream, "leader": leader, "acked": acked, "deliveries": deliveries}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
