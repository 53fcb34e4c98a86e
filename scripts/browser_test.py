#!/usr/bin/env python3
"""Drives the overc page in headless Chromium (stdlib only; used by e2e-browser.sh).

usage: browser_test.py BASE_URL OUT_DIR [SERVER_PID]

Loads every page with --dump-dom and asserts on the rendered DOM, takes a
screenshot of each, then opens the services page over the DevTools protocol,
pushes a new state through the real API and checks the row changes in place
(highlighted, without a reload). Given the server's PID, it finally stops
the server and checks the page shows its cannot-reach banner. With LOGIN_URL
set in the environment (a server with a [ui] login, as
http://user:pass@host:port), it also checks the page works when opened with
the credentials in its URL.
"""
import base64, json, os, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request

BASE, OUT = sys.argv[1], sys.argv[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--hide-scrollbars"]
os.makedirs(OUT, exist_ok=True)


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def chromium(*args, size="1200,900"):
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([CHROMIUM, *FLAGS, f"--window-size={size}", f"--user-data-dir={profile}", *args],
                           capture_output=True, text=True, timeout=120)
    return r.stdout


def dump(page):
    return chromium("--virtual-time-budget=5000", "--dump-dom", f"{BASE}/#/{page}")


def screenshot(page, name, size="1200,900"):
    chromium("--virtual-time-budget=5000", f"--screenshot={OUT}/{name}.png", f"{BASE}/#/{page}", size=size)
    if not os.path.exists(f"{OUT}/{name}.png"):
        fail(f"no screenshot of {page}")


def expect(dom, *needles, page=""):
    for n in needles:
        if n not in dom:
            fail(f"{page}: {n!r} not in the rendered page:\n{dom[:4000]}")


def api(path, body=None):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


status = api("/ui/api/status/")
svc = {(s["name"], v["name"]): v["id"] for s in status["servers"] for v in s["services"]}
load_id = svc[("web1", "load")]

# Every page, rendered after its scripts ran.
dom = dump("")
expect(dom, 'data-server="web1"', 'data-server="db1"', 'title="load: OK"', 'title="postgres: FAIL (overdue)"',
       "marker s-FAIL overdue", "alerts / 24 h", page="overview")
# A server's n_alerts counts only the alerts about itself (as OverC 1.0.9);
# its card adds its services': db1 has two first reports, an offline and a
# posted alert.
expect(dom, "4 alerts / 24 h", page="overview")
dom = dump("services")
expect(dom, '<table class="services">', ">web1<", ">postgres<", 'class="badge s-FAIL"', "overdue",
       "LOAD OK - load average", page="services")
dom = dump(f"service/{load_id}")
expect(dom, "web1 / load", "× OK (folded; click to unfold)", 'class="timeline"', 'data-label="load1"',
       "<polyline", 'class="group', page="service")
dom = dump("alerts")
expect(dom, "Alerts of the last 24 hours", "backup failed", "Monitoring plugin offline",
       "First report: FAIL", "FAIL: CRITICAL - connection refused", page="alerts")
if "(?)" in dom:
    fail(f"alerts: a first report shown as the stored text \"(?)\" -> …:\n{dom[:4000]}")
for page, name in [("", "overview"), ("services", "services"), (f"service/{load_id}", "service"), ("alerts", "alerts")]:
    screenshot(page, name)
# A phone-width view of the busiest page.
screenshot("services", "services-phone", size="390,844")
print("pages rendered and screenshotted")

# Opened as http://user:pass@host/, the page's URL carries the credentials:
# fetch() refuses such URLs, and a relative URL resolved against the page keeps
# them, so every request failed until app.js built them on location.origin.
LOGIN_URL = os.environ.get("LOGIN_URL")
if LOGIN_URL:
    where = "services, opened with credentials in the URL"
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", f"{LOGIN_URL}/#/services")
    if "Cannot reach the overc server" in dom:
        fail(f"{where}: the page could not fetch its data:\n{dom[:4000]}")
    expect(dom, '<table class="services">', ">load<", "LOAD OK - load average", page=where)
    # /ui/api/info answered with the login: the actions are offered.
    expect(dom, '<button id="test-alert" class="action">', page=where)
    print("the page works when opened as http://user:pass@host/")


# --- a minimal DevTools-protocol client over a WebSocket -------------------

class DevTools:
    def __init__(self, ws_url):
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            fail(f"websocket handshake: {head!r}")
        self.next_id = 0

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                fail("devtools connection closed")
            buf += chunk
        return buf

    def _recv_message(self):
        data = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            data += self._recv_exact(n)
            if b0 & 0x80:
                return data

    def call(self, method, **params):
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            msg = json.loads(self._recv_message())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    fail(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r["result"].get("value")

    def wait(self, what, expr, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.js(expr):
                return
            time.sleep(0.1)
        fail(f"timed out waiting for {what}; page: {self.js('document.body.outerHTML')[:3000]}")


with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
profile = tempfile.mkdtemp()
# Its TMPDIR is the profile, removed below: a chromium stopped by a signal
# (SIGTERM too) leaves its org.chromium.Chromium.* singleton folder behind.
browser = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                            "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "TMPDIR": profile}, start_new_session=True)
try:
    targets = None
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                targets = [t for t in json.load(r) if t["type"] == "page"]
            if targets:
                break
        except OSError:
            pass
        time.sleep(0.1)
    if not targets:
        fail("chromium's DevTools endpoint did not come up")
    dt = DevTools(targets[0]["webSocketDebuggerUrl"])
    dt.call("Page.enable")
    dt.call("Page.navigate", url=f"{BASE}/#/services")
    row = f'document.querySelector(\'table.services tr[data-id="{load_id}"]\')'
    dt.wait("the services table", f"{row} && {row}.dataset.state === 'OK'")
    dt.js("window.__sameDocument = 'yes'")
    api("/api/set/service/status", {"server": {"name": "web1", "key": "k1"}, "period": 60,
                                    "services": [{"name": "load", "state": "WARN", "info": "LOAD WARNING - load average: 7.1"}]})
    dt.wait("the new state without a reload",
            f"{row}.dataset.state === 'WARN' && {row}.classList.contains('changed') && "
            f"{row}.textContent.includes('LOAD WARNING') && window.__sameDocument === 'yes'")
    shot = dt.call("Page.captureScreenshot", format="png")
    with open(f"{OUT}/services-live.png", "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print("the services page picked up a new state in place")

    dt.call("Page.navigate", url=f"{BASE}/#/service/{load_id}")
    dt.wait("the folded history", "!!document.querySelector('tr.group')")
    dt.js("document.querySelector('tr.group').click()")
    dt.wait("the unfolded group", "[...document.querySelectorAll('tr.member')].some(r => !r.hidden)")
    print("a folded history group unfolds")

    # The server goes away: the open page says so instead of showing stale data.
    if len(sys.argv) > 3:
        os.kill(int(sys.argv[3]), 15)
        dt.wait("the cannot-reach banner",
                "!document.getElementById('banner').hidden && "
                "document.getElementById('banner').textContent.includes('Cannot reach the overc server')")
        print("the page warns when it cannot reach the server")
finally:
    # The whole process group: its zygote and renderer processes too.
    os.killpg(browser.pid, 9)
    browser.wait()
    shutil.rmtree(profile, ignore_errors=True)
print("e2e-browser: ok")
