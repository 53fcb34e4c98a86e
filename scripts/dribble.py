#!/usr/bin/env python3
"""Clients that dribble request headers against an overc-server, while a
normal client reports on a keep-alive connection and new connections are
tried now and then; prints the server's threads and RSS over time.

  dribble.py URL PID [--clients N] [--seconds S] [--max-threads T]

Bounded: at most N sockets, for S seconds; exits non-zero when the server
held more than T threads or the keep-alive client was refused or failed.
Used by scripts/hostile.sh.
"""
import argparse
import http.client
import json
import resource
import selectors
import socket
import sys
import time


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Threads", "VmRSS"):
                out[k] = int(v.split()[0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("pid", type=int)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--max-threads", type=int, default=1300)
    o = ap.parse_args()
    host, port = o.url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    port = int(port)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, o.clients + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    body = json.dumps({"server": {"name": "dribble-normal", "key": "k"}})
    normal = http.client.HTTPConnection(host, port, timeout=10)
    normal.request("POST", "/api/ping", body)
    normal.getresponse().read()  # connected before the dribblers come

    sel = selectors.DefaultSelector()
    socks = []
    refused = 0  # answered 503 or closed before the client was done
    for _ in range(o.clients):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        socks.append(s)
        sel.register(s, selectors.EVENT_READ)
    for s in socks:
        try:
            s.send(b"POST /api/ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        except OSError:
            pass

    start = time.monotonic()
    lat_keep, lat_new, codes_new, samples = [], [], {}, []
    next_drip = next_probe = next_sample = start
    normal_failed = None
    while (now := time.monotonic()) - start < o.seconds:
        if now >= next_drip:  # a byte per client per second
            for s in socks:
                if s.fileno() >= 0:
                    try:
                        s.send(b"x")
                    except OSError:
                        pass
            next_drip = now + 1.0
        if now >= next_probe:
            t = time.monotonic()
            try:
                normal.request("POST", "/api/ping", body)
                r = normal.getresponse()
                r.read()
                if r.status != 200:
                    normal_failed = f"keep-alive client got {r.status}"
            except OSError as e:
                normal_failed = f"keep-alive client failed: {e}"
            lat_keep.append(time.monotonic() - t)
            t = time.monotonic()
            try:
                c = http.client.HTTPConnection(host, port, timeout=10)
                c.request("POST", "/api/ping", body)
                r = c.getresponse()
                r.read()
                c.close()
                codes_new[r.status] = codes_new.get(r.status, 0) + 1
                if r.status == 200:
                    lat_new.append(time.monotonic() - t)
            except OSError as e:
                codes_new[type(e).__name__] = codes_new.get(type(e).__name__, 0) + 1
            next_probe = time.monotonic() + 0.1
        if now >= next_sample:
            st = proc_status(o.pid)
            open_socks = sum(1 for s in socks if s.fileno() >= 0)
            samples.append((now - start, st["Threads"], st["VmRSS"], open_socks))
            print(f"  t={now - start:5.1f}s server threads {st['Threads']:5d}, "
                  f"RSS {st['VmRSS'] / 1024:6.1f} MiB, dribblers still open {open_socks}",
                  flush=True)
            next_sample = now + 1.0
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data or b" 503 " in data[:16] or b" 408 " in data[:16]:
                refused += 1
                sel.unregister(s)
                s.close()
    for s in socks:
        if s.fileno() >= 0:
            s.close()
    normal.close()

    def pct(v, p):
        v = sorted(v)
        return v[min(len(v) - 1, int(len(v) * p))] * 1000 if v else float("nan")

    max_threads = max(s[1] for s in samples)
    max_rss = max(s[2] for s in samples) / 1024
    print(f"dribblers: {o.clients}, closed by the server (503, 408 or closed): {refused}")
    print(f"server: at most {max_threads} threads, {max_rss:.1f} MiB RSS")
    print(f"keep-alive client: {len(lat_keep)} pings, p50 {pct(lat_keep, .5):.1f} ms, "
          f"p99 {pct(lat_keep, .99):.1f} ms, max {pct(lat_keep, 1):.1f} ms")
    print(f"new connections: {codes_new}; answered 200 in p50 {pct(lat_new, .5):.1f} ms, "
          f"max {pct(lat_new, 1):.1f} ms")
    bad = []
    if max_threads > o.max_threads:
        bad.append(f"the server held {max_threads} threads (limit {o.max_threads})")
    if normal_failed:
        bad.append(normal_failed)
    for b in bad:
        print("FAIL:", b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
