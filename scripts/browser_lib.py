"""Headless Chromium over the DevTools protocol, stdlib only.

Used by browser_test.py (the page's end-to-end test) and page_render.py (the
render timing with 10,000 services). `Browser()` starts chromium with its own
profile and TMPDIR and kills its whole process group on exit; `.page()` gives
a `DevTools` connection to its tab.
"""
import base64, json, os, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--hide-scrollbars"]


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


class DevTools:
    """A minimal DevTools-protocol client over a WebSocket."""

    def __init__(self, ws_url):
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=120)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            fail(f"websocket handshake: {head!r}")
        self.next_id = 0
        self.events = []  # events received while waiting for answers
        self.on_dialog = None  # called with a Page.javascriptDialogOpening's params

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

    def _send(self, method, params):
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        return self.next_id

    def call(self, method, **params):
        want = self._send(method, params)
        while True:
            msg = json.loads(self._recv_message())
            if msg.get("id") == want:
                if "error" in msg:
                    fail(f"{method}: {msg['error']}")
                return msg["result"]
            if msg.get("method") == "Page.javascriptDialogOpening" and self.on_dialog:
                # Answered without waiting: the page is blocked until then.
                self._send("Page.handleJavaScriptDialog", self.on_dialog(msg["params"]))
            elif "method" in msg:
                self.events.append(msg)

    def js(self, expr, await_promise=False):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in r:
            fail(f"script error in {expr[:200]!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, what, expr, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.js(expr):
                return
            time.sleep(0.1)
        fail(f"timed out waiting for {what}; page: {self.js('document.body.outerHTML')[:3000]}")

    def goto(self, url):
        """Opens url and waits for the page's first refresh."""
        try:
            self.js("document.body.dataset.refreshed = '0'")
        except SystemExit:
            pass
        self.call("Page.navigate", url=url)
        self.wait(f"the page at {url}", "document.readyState === 'complete' && Number(document.body.dataset.refreshed) > 0 "
                  "&& !document.getElementById('view').textContent.startsWith('Loading')")

    def refreshed(self):
        """Waits for the page's next refresh."""
        n = self.js("Number(document.body.dataset.refreshed || 0)")
        self.js("refresh()")
        self.wait("a refresh", f"Number(document.body.dataset.refreshed) > {n}")

    def screenshot(self, path):
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))


class Browser:
    def __enter__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.profile = tempfile.mkdtemp()
        # Its TMPDIR is the profile, removed below: a chromium stopped by a signal
        # (SIGTERM too) leaves its org.chromium.Chromium.* singleton folder behind.
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--remote-debugging-port={self.port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "TMPDIR": self.profile}, start_new_session=True)
        return self

    def page(self):
        targets = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as r:
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
        return dt

    def __exit__(self, *exc):
        # The whole process group: its zygote and renderer processes too.
        os.killpg(self.proc.pid, 9)
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
