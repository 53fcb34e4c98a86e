"""A proxy in front of a real overc server that adds what the notification
policy (SPEC §9) and per-plugin delivery (SPEC §3) will add to the read API,
in their documented shapes, so the page's slot-in parts can be tested before
the server has them: each service's "soft", "flapping", "silenced", "ack";
each alert's "deliveries"; GET/POST /ui/api/silences, DELETE
/ui/api/silences/<id>; POST/DELETE /ui/api/item/service/<id>/ack; and
/ui/api/info with actions on. Everything else goes to the real server.

Used by browser_test.py: `with PolicyMock(base, marks) as url: …`.
"""
import datetime, http.server, json, re, threading, urllib.error, urllib.request


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class PolicyMock:
    def __init__(self, upstream, marks):
        """marks: {(server, service): {"soft"|"flapping"|"silenced": True, "ack": comment}}"""
        self.upstream = upstream
        self.marks = marks
        self.acks = {}  # service id -> ack
        self.silences = []
        self.lock = threading.Lock()

    def __enter__(self):
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, code, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with mock.lock:
                    local = mock.local(self.command, self.path, body)
                if local:
                    return self.answer(*local)
                req = urllib.request.Request(mock.upstream + self.path, data=body or None, method=self.command,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() in ("content-type", "x-overc-action", "authorization")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        code, data, ctype = r.status, r.read(), r.headers.get("Content-Type")
                except urllib.error.HTTPError as e:
                    code, data, ctype = e.code, e.read(), e.headers.get("Content-Type")
                if code == 200 and self.path.startswith("/ui/api/status"):
                    with mock.lock:
                        data = json.dumps(mock.decorate(json.loads(data))).encode()
                self.answer(code, data, ctype or "application/json")

            do_GET = do_POST = do_DELETE = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()

    def local(self, method, path, body):
        now = datetime.datetime.now(datetime.timezone.utc)
        path = path.split("?")[0]
        if path == "/ui/api/info":
            return 200, {"version": "mock", "actions": True, "alert_plugins": ["log", "pager"]}
        if path == "/ui/api/silences" and method == "GET":
            return 200, {"silences": self.silences}
        if path == "/ui/api/silences" and method == "POST":
            b = json.loads(body)
            if not b.get("server") or not b.get("comment"):
                return 400, {"error": "Data: \"server\" and \"comment\" are required"}
            s = {"id": len(self.silences) + 1, "server": b["server"], "service": b.get("service"),
                 "starts": iso(now), "ends": iso(now + datetime.timedelta(seconds=b.get("duration", 3600))),
                 "comment": b["comment"], "author": "admin", "active": True}
            self.silences.append(s)
            return 200, {"ok": 1, "id": s["id"]}
        m = re.fullmatch(r"/ui/api/silences/(\d+)", path)
        if m and method == "DELETE":
            for s in self.silences:
                if s["id"] == int(m[1]):
                    s["active"], s["ends"] = False, iso(now)
                    return 200, {"ok": 1}
            return 404, {"error": "Not found"}
        m = re.fullmatch(r"/ui/api/item/service/(\d+)/ack", path)
        if m and method == "POST":
            self.acks[int(m[1])] = {"author": "admin", "comment": json.loads(body)["comment"], "ctime": iso(now)}
            return 200, {"ok": 1}
        if m and method == "DELETE":
            self.acks.pop(int(m[1]), None)
            return 200, {"ok": 1}
        return None

    def decorate(self, data):
        for srv in data.get("servers", []):
            for svc in srv["services"]:
                marks = self.marks.get((srv["name"], svc["name"]), {})
                for k in ("soft", "flapping", "silenced"):
                    svc[k] = bool(marks.get(k))
                if "ack" in marks and svc["id"] not in self.acks:
                    self.acks[svc["id"]] = {"author": "admin", "comment": marks["ack"], "ctime": srv["last_seen"]}
                    marks.pop("ack")
                svc["ack"] = self.acks.get(svc["id"])
        kinds = ["delivered", "pending", "failing", "given-up"]
        soon = iso(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10))
        for i, a in enumerate(data.get("alerts", [])):
            other = kinds[i % 4]
            a["soft"], a["silenced"] = False, False
            a["deliveries"] = [
                {"plugin": "log", "state": "delivered", "attempts": 1, "next_try": None, "error": None},
                {"plugin": "pager", "state": other, "attempts": 3 if other != "delivered" else 1,
                 "next_try": soon if other in ("pending", "failing") else None,
                 "error": "exit status 1: connection refused" if other in ("failing", "given-up") else None},
            ]
        return data
