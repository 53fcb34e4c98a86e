#!/usr/bin/env python3
"""Drives the overc page in headless Chromium (stdlib only; used by e2e-browser.sh).

usage: browser_test.py BASE_URL OUT_DIR [SERVER_PID]

Against the data e2e-browser.sh pushed, over the DevTools protocol
(browser_lib.py): the overview's summary counts and its servers worst first,
the overdue marking, the services page worst first, its sorting, filter box
and "problems only" switch kept in the URL, a row changing in place, the
server page, the service page (charts, legend, folded history, load more),
the alerts page (severity filter, load more), the silences page. Then the
same page behind policy_mock.py (the read API as SPEC §9 will have it): the
policy's marks and counts, deliveries per plugin, acknowledging, silencing
and ending a silence. Screenshots (desktop, phone, dark) go to OUT_DIR. With
AXE set to axe-core's axe.min.js, every page is checked by axe-core (WCAG 2.1
A and AA, best practices) in light and dark; then keyboard reachability.
With LOGIN_URL (a server with a [ui] login, as http://user:pass@host:port)
it checks the page opened with credentials in its URL and adds a host from
the overview. Given the server's PID, it finally stops the server and checks
the page shows its cannot-reach banner.
"""
import base64, json, os, sys, urllib.request

from browser_lib import Browser, fail
from policy_mock import PolicyMock

BASE, OUT = sys.argv[1], sys.argv[2]
os.makedirs(OUT, exist_ok=True)
AXE = os.environ.get("AXE")
LOGIN_URL = os.environ.get("LOGIN_URL")
AXE_VERSION = None


def api(path, body=None, base=BASE):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def same(what, got, want):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")


status = api("/ui/api/status/")
svc = {(s["name"], v["name"]): v["id"] for s in status["servers"] for v in s["services"]}
srv = {s["name"]: s["id"] for s in status["servers"]}
load_id = svc[("web1", "load")]

ROWS = "[...document.querySelectorAll('table.services tbody tr')]"
ROW_NAMES = f"{ROWS}.map(r => [r.cells[0].textContent.trim(), r.cells[1].textContent.trim(), r.dataset.status])"


def rows(dt):
    return dt.js(ROW_NAMES)


def hash_has(dt, *parts):
    h = dt.js("location.hash")
    for p in parts:
        if p not in h:
            fail(f"{p!r} not kept in the URL: {h}")


def size(dt, width, height, dark=False):
    dt.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=width < 600)
    dt.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}])


def shot(dt, name):
    dt.screenshot(f"{OUT}/{name}.png")


violations = []
checked = []


def axe(dt, where):
    """axe-core on the current page; violations are collected, reported at the end."""
    if not AXE:
        return
    global AXE_VERSION
    if not dt.js("typeof axe !== 'undefined'"):
        with open(AXE) as f:
            dt.js(f.read())
        AXE_VERSION = dt.js("axe.version")
    found = dt.js("""axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})
        .then(r => r.violations.map(v => `${v.id} (${v.impact}): ${v.help}: ` +
            v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').split('\\n').slice(1).join(' ')).join(' | ')))""",
                  await_promise=True)
    checked.append(where)
    for v in found:
        violations.append(f"{where}: {v}")


with Browser() as b:
    dt = b.page()
    size(dt, 1200, 900)

    # --- overview: summary, servers worst first, overdue ---------------------
    dt.goto(f"{BASE}/#/")
    dt.wait("the cards", "document.querySelectorAll('#cards .card').length === 5")
    same("overview: servers worst first (FAIL, UNK, WARN, overdue, OK; then name)",
         dt.js("[...document.querySelectorAll('#cards .card')].map(c => [c.dataset.server, c.dataset.worst])"),
         [["zeta", "FAIL"], ["mail1", "UNK"], ["db1", "WARN"], ["app2", "overdue"], ["web1", "OK"]])
    same("overview: each card's worst state as text",
         dt.js("[...document.querySelectorAll('#cards .card h2 .badge')].map(b => b.textContent)"),
         ["FAIL", "UNK", "WARN", "overdue", "OK"])
    same("overview: summary counts",
         dt.js("Object.fromEntries([...document.querySelectorAll('.summary a')].map(a => [a.dataset.count, a.querySelector('b').textContent]))"),
         {"FAIL": "1", "UNK": "1", "WARN": "1", "overdue": "2", "OK": "4",
          "silenced": "0", "flapping": "0", "acked": "0", "all": "9"})
    # An overdue service is marked as such, never in its last state's colour.
    pg = "document.querySelector('.card[data-server=db1] a.marker[href$=\"/service/%d\"]')" % svc[("db1", "postgres")]
    same("overview: postgres (last FAIL, overdue) marker", dt.js(f"[{pg}.className, {pg}.textContent, {pg}.title]"),
         ["marker s-overdue", "postgres · overdue", "postgres: overdue (last FAIL)"])
    if dt.js(f"getComputedStyle({pg}).backgroundColor") == dt.js(
            "getComputedStyle(document.querySelector('.summary .s-FAIL')).backgroundColor"):
        fail("overview: an overdue service in its last state's colour")
    # Alerts about db1 itself and its services: two first reports, an offline, a posted alert.
    same("overview: db1's alert count", dt.js("document.querySelector('.card[data-server=db1] .count').textContent"),
         "4 alerts / 24 h")
    shot(dt, "overview")
    # Each count links to the services it counts.
    dt.js("document.querySelector('.summary a[data-count=overdue]').click()")
    dt.wait("the overdue services", f"location.hash === '#/services?show=overdue' && {ROWS}.length === 2")
    same("summary link to the overdue services", sorted(r[1] for r in rows(dt)), ["cron", "postgres"])
    print("overview: worst first, counts, overdue marked, counts link to the services")

    # --- services: worst first, sorting, filtering ------------------------------
    dt.goto(f"{BASE}/#/services")
    dt.wait("the services", f"{ROWS}.length === 9")
    got = rows(dt)
    same("services: worst first", [r[2] for r in got], ["FAIL", "UNK", "WARN", "overdue", "overdue", "OK", "OK", "OK", "OK"])
    same("services: first three", got[:3], [["zeta", "zz", "FAIL"], ["mail1", "smtp", "UNK"], ["db1", "backup", "WARN"]])
    # Equally long in their state: by server, then service.
    same("services: the OK ones", [r[:2] for r in got[5:]], [["app2", "queue"], ["web1", "disk"], ["web1", "load"], ["web1", "nginx"]])
    # postgres became overdue first (it was pushed before cron): longest in that state first.
    same("services: overdue, longest first", [r[1] for r in got[3:5]], ["postgres", "cron"])
    row = f"document.querySelector('table.services tr[data-id=\"{load_id}\"]')"
    same("services: info without perfdata", dt.js(f"{row}.querySelector('td.info').textContent"), "LOAD OK - load average: 0.52")
    if "load1=0.52" not in dt.js(f"{row}.querySelector('td.info').title"):
        fail("services: the perfdata is not on the info's hover")
    same("services: seen on one line", dt.js(f"getComputedStyle({row}.querySelector('td.seen')).whiteSpace"), "nowrap")
    pgrow = f"document.querySelector('table.services tr[data-id=\"{svc[('db1', 'postgres')]}\"]')"
    same("services: overdue row", dt.js(f"{pgrow}.cells[2].textContent.trim()"), "overdue last FAIL")
    shot(dt, "services")

    dt.js("document.querySelector('th button[data-sort=server]').click()")
    hash_has(dt, "sort=server")
    servers = [r[0] for r in rows(dt)]
    same("sort by server", servers, sorted(servers))
    same("sort by server: aria-sort", dt.js("document.querySelector('th button[data-sort=server]').parentNode.getAttribute('aria-sort')"), "ascending")
    dt.js("document.querySelector('th button[data-sort=server]').click()")
    hash_has(dt, "sort=server", "rev=1")
    same("sort by server, reversed", [r[0] for r in rows(dt)], sorted(servers, reverse=True))
    dt.js("document.querySelector('th button[data-sort=alerts]').click()")
    counts = dt.js(f"{ROWS}.map(r => parseInt(r.cells[7].textContent))")
    same("sort by alerts, most first", counts, sorted(counts, reverse=True))
    dt.js("document.querySelector('th button[data-sort=service]').click()")
    names = [r[1] for r in rows(dt)]
    same("sort by service", names, sorted(names))

    dt.js("{ const f = document.getElementById('filter'); f.value = 'db1'; f.dispatchEvent(new Event('input', {bubbles: true})) }")
    dt.wait("the filter", f"{ROWS}.length === 2 && location.hash.includes('q=db1')")
    dt.js("document.getElementById('problems').click()")
    dt.wait("problems only", "location.hash.includes('problems=1')")
    dt.js("{ const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input', {bubbles: true})) }")
    dt.wait("problems only, no filter", f"{ROWS}.length === 5 && !location.hash.includes('q=')")
    same("problems only", sorted(r[2] for r in rows(dt)), ["FAIL", "UNK", "WARN", "overdue", "overdue"])
    # A shared link opens the same view.
    dt.goto(f"{BASE}/#/services?q=web1%20lo&sort=seen")
    dt.wait("the shared view", f"{ROWS}.length === 1 && document.getElementById('filter').value === 'web1 lo'")
    same("a shared link: aria-sort", dt.js("document.querySelector('th button[data-sort=seen]').parentNode.getAttribute('aria-sort')"), "ascending")
    dt.goto(f"{BASE}/#/services?problems=1")
    dt.wait("the problems-only link", f"{ROWS}.length === 5 && document.getElementById('problems').checked")
    print("services: worst first, sorting, filter and problems-only kept in the URL")

    # A pushed state changes its row in place, highlighted, without a reload.
    dt.goto(f"{BASE}/#/services")
    dt.wait("the services table", f"{row} && {row}.dataset.status === 'OK'")
    dt.js("window.__sameDocument = 'yes'")
    api("/api/set/service/status", {"server": {"name": "web1", "key": "k1"}, "period": 60,
                                    "services": [{"name": "load", "state": "WARN", "info": "LOAD WARNING - load average: 7.1"}]})
    dt.wait("the new state without a reload",
            f"{row}.dataset.status === 'WARN' && {row}.classList.contains('changed') && "
            f"{row}.textContent.includes('LOAD WARNING') && window.__sameDocument === 'yes'")
    shot(dt, "services-live")
    print("services: a new state changes its row in place")

    # --- server page ----------------------------------------------------------------
    dt.goto(f"{BASE}/#/server/{srv['db1']}")
    dt.wait("the server page", f"{ROWS}.length === 2 && !!document.querySelector('table.alerts')")
    same("server page: title", dt.js("document.querySelector('h1').textContent.trim()"), "db1 WARN")
    same("server page: its services, worst first", [r[0] for r in rows(dt)], ["backup", "postgres"])
    if "backup failed: tape full" not in dt.js("document.querySelector('table.alerts').textContent"):
        fail("server page: its alerts")
    shot(dt, "server")
    print("server page: its services and alerts")

    # --- service page -----------------------------------------------------------------
    dt.goto(f"{BASE}/#/service/{load_id}")
    dt.wait("the service page", "!!document.querySelector('.chart')")
    same("service page: chart time axis ticks", dt.js("document.querySelectorAll('.chart[data-label=load1] svg text').length"), 7)
    same("service page: warn and crit lines of load1 (4, 8)",
         dt.js("[...document.querySelectorAll('.chart[data-label=load1] line[class^=th-]')].map(l => l.textContent)"), ["warn 4", "crit 8"])
    same("service page: timeline legend", dt.js("[...document.querySelectorAll('.legend li')].map(l => l.textContent)"),
         ["OK", "WARN", "FAIL", "UNK", "overdue", "no report"])
    dt.js("document.querySelector('tr.group button').click()")
    dt.wait("the unfolded group", "[...document.querySelectorAll('tr.member')].some(r => !r.hidden)")
    shot(dt, "service")
    dt.js("document.querySelector('[data-more]').click()")
    dt.wait("48 hours", "location.hash.includes('hours=48') && [...document.querySelectorAll('h2')].some(h => h.textContent === 'Last 48 hours')")
    print("service page: charts with time axis and thresholds, legend, folded history, load more")

    # --- alerts ------------------------------------------------------------------------------
    dt.goto(f"{BASE}/#/alerts")
    dt.wait("the alerts", "!!document.querySelector('table.alerts')")
    text = dt.js("document.getElementById('view').textContent")
    for needle in ["backup failed", "Monitoring plugin offline", "First report: FAIL", "FAIL: CRITICAL - connection refused"]:
        if needle not in text:
            fail(f"alerts: {needle!r} not shown")
    if "(?)" in text:
        fail("alerts: a first report shown as the stored text \"(?)\" -> …")
    shot(dt, "alerts")
    dt.js("{ const s = document.querySelector('select[name=severity]'); s.value = 'WARN'; s.dispatchEvent(new Event('change', {bubbles: true})) }")
    dt.wait("the severity filter", "location.hash.includes('severity=WARN') && "
            "[...document.querySelectorAll('tr.alert')].every(r => r.dataset.severity === 'WARN')")
    same("alerts: WARN only", dt.js("document.querySelectorAll('tr.alert').length"), 2)
    dt.js("document.querySelector('[data-more]').click()")
    dt.wait("48 hours of alerts", "location.hash.includes('hours=48') && document.getElementById('title').textContent === 'Alerts of the last 48 hours'")
    print("alerts: severity filter, load more")

    # --- silences on this server -------------------------------------------------------
    dt.goto(f"{BASE}/#/silences")
    try:
        api("/ui/api/silences")
        has_silences = True
    except urllib.error.HTTPError as e:
        has_silences = e.code != 404
    if not has_silences:
        dt.wait("the note", "document.getElementById('view').textContent.includes('not available')")
        print("silences: not available on this server (404): the page says so")

    # --- phone and dark --------------------------------------------------------------------
    size(dt, 390, 844)
    for page, name in [("", "overview-phone"), ("services", "services-phone"), (f"service/{load_id}", "service-phone")]:
        dt.goto(f"{BASE}/#/{page}")
        dt.wait("the page", "!!document.querySelector('main h1')")
        if dt.js("document.documentElement.scrollWidth") > 390:
            fail(f"{name}: wider than a 390 px phone ({dt.js('document.documentElement.scrollWidth')} px)")
        shot(dt, name)
    size(dt, 1200, 900, dark=True)
    dt.goto(f"{BASE}/#/")
    shot(dt, "overview-dark")
    dt.goto(f"{BASE}/#/services")
    shot(dt, "services-dark")
    print("phone (390 px, no sideways scrolling) and dark screenshots")

    # --- accessibility: axe-core, then the keyboard -----------------------------------------
    for dark in (False, True):
        size(dt, 1200, 900, dark)
        for page in ["", "services", f"server/{srv['db1']}", f"service/{load_id}", "alerts", "silences"]:
            dt.goto(f"{BASE}/#/{page}")
            axe(dt, f"#/{page} ({'dark' if dark else 'light'})")
    size(dt, 1200, 900)
    dt.goto(f"{BASE}/#/services")
    reached = []
    for _ in range(30):
        for kind in ("keyDown", "keyUp"):
            dt.call("Input.dispatchKeyEvent", type=kind, key="Tab", code="Tab", windowsVirtualKeyCode=9)
        reached.append(dt.js("(e => e.id || e.dataset.sort || e.getAttribute('href') || e.tagName)(document.activeElement)"))
    for want in ["#view", "#/services", "filter", "problems", "server", "state", "seen", f"#/service/{svc[('zeta', 'zz')]}"]:
        if want not in reached:
            fail(f"keyboard: {want!r} not reached by Tab; reached {reached}")
    focus = dt.js("getComputedStyle(document.activeElement).outlineStyle")
    if focus == "none":
        fail("keyboard: the focused element has no visible outline")
    print("keyboard: skip link, navigation, filter, switch, sort headers and rows reached by Tab, focus visible")

# --- the read API as SPEC §9 will have it ------------------------------------------------
marks = {("db1", "backup"): {"ack": "tape ordered"}, ("db1", "postgres"): {"silenced": True},
         ("mail1", "smtp"): {"flapping": True}, ("zeta", "zz"): {"soft": True}}
with PolicyMock(BASE, marks) as mock, Browser() as b:
    dt = b.page()
    dt.on_dialog = lambda p: {"accept": True, "promptText": "restarting the database"}
    size(dt, 1200, 900)
    dt.goto(f"{mock}/#/")
    dt.wait("the policy counts", "!!document.querySelector('.summary a[data-count=acked]')")
    same("policy counts", dt.js("Object.fromEntries([...document.querySelectorAll('.summary a')].map(a => [a.dataset.count, a.querySelector('b').textContent]))"),
         {"FAIL": "1", "UNK": "1", "WARN": "2", "overdue": "2", "OK": "3", "silenced": "1", "flapping": "1", "acked": "1", "all": "9"})
    dt.js("document.querySelector('.summary a[data-count=silenced]').click()")
    dt.wait("the silenced services", f"{ROWS}.length === 1")
    same("the silenced service", rows(dt)[0][1], "postgres")
    dt.goto(f"{mock}/#/services")
    same("marks", dt.js(f"{ROWS}.map(r => [...r.querySelectorAll('.mark')].map(m => m.textContent).join(' ')).filter(Boolean)"),
         ["soft", "flapping", "ack", "silenced"])
    # Acknowledge a problem, then take it back.
    pg_id = svc[("db1", "postgres")]
    dt.goto(f"{mock}/#/service/{pg_id}")
    dt.wait("the Acknowledge button", "!!document.querySelector('button[data-ack]')")
    dt.js("document.querySelector('button[data-ack]').click()")
    dt.wait("the acknowledgement", "document.getElementById('view').textContent.includes('restarting the database') && "
            "!!document.querySelector('button[data-unack]')")
    shot(dt, "service-ack")
    axe(dt, "service page with actions (mock policy)")
    dt.js("document.querySelector('button[data-unack]').click()")
    dt.wait("the acknowledgement removed", "!!document.querySelector('button[data-ack]')")
    # Silence it from its page: the silences page opens with the form filled.
    dt.js("[...document.querySelectorAll('a.button')].find(a => a.textContent === 'Silence').click()")
    dt.wait("the silence form", "document.getElementById('sl-server')?.value === 'db1' && document.getElementById('sl-service').value === 'postgres'")
    dt.js("document.getElementById('sl-comment').value = 'failover test'; document.querySelector('#silence-form button').click()")
    dt.wait("the active silence", "[...document.querySelectorAll('table.silences')][0]?.textContent.includes('failover test')")
    shot(dt, "silences")
    axe(dt, "silences page with a silence (mock policy)")
    dt.js("document.querySelector('button[data-end-silence]').click()")
    dt.wait("the silence ended", "!document.querySelector('button[data-end-silence]') && "
            "document.getElementById('list').textContent.split('ended in the last 24 hours')[1].includes('failover test')")
    # A server page offers its actions.
    dt.goto(f"{mock}/#/server/{srv['db1']}")
    dt.wait("the server actions", "!!document.querySelector('button[data-rename-server]')")
    same("server page actions", dt.js("[...document.querySelectorAll('.actions button, .actions a')].map(b => b.textContent)"),
         ["Rename", "Delete", "Silence host", "Send test alert"])
    # Deliveries per plugin.
    dt.goto(f"{mock}/#/alerts")
    dt.wait("the deliveries", "!!document.querySelector('.dl')")
    states = dt.js("[...document.querySelectorAll('.dl[data-plugin=pager]')].map(d => d.className.split(' ')[1])")
    for s in ["dl-delivered", "dl-pending", "dl-failing", "dl-given-up"]:
        if s not in states:
            fail(f"deliveries: no {s} among {states}")
    if "next try in" not in dt.js("document.querySelector('.dl-pending').textContent"):
        fail("deliveries: a pending one without its next try")
    shot(dt, "alerts-deliveries")
    axe(dt, "alerts with deliveries (mock policy)")
    print("policy (mocked read API): counts, marks, acknowledge, silence and end it, server actions, deliveries per plugin")

if AXE:
    if violations:
        print("accessibility (axe-core): violations:")
        for v in violations:
            print("  " + v)
        fail(f"{len(violations)} accessibility violations")
    print(f"accessibility (axe-core {AXE_VERSION}, WCAG 2.1 A/AA and best practices): no violations on {len(checked)} pages: "
          + ", ".join(checked))

# Opened as http://user:pass@host/, the page's URL carries the credentials:
# fetch() refuses such URLs, and a relative URL resolved against the page keeps
# them, so every request failed until app.js built them on location.origin.
if LOGIN_URL:
    plain = LOGIN_URL.split("@", 1)[1]
    user_pass = LOGIN_URL.split("://", 1)[1].split("@", 1)[0]
    with Browser() as b:
        dt = b.page()
        dt.goto(f"{LOGIN_URL}/#/services")
        where = "services, opened with credentials in the URL"
        if "Cannot reach the overc server" in dt.js("document.body.textContent"):
            fail(f"{where}: the page could not fetch its data")
        dt.wait(where, f"{ROWS}.length === 2 && !document.getElementById('test-alert').hidden")
        print("the page works when opened as http://user:pass@host/")
        # Add a host from the overview: its key is shown once.
        dt.on_dialog = lambda p: {"accept": True, "promptText": "new-host"}
        dt.goto(f"{LOGIN_URL}/#/")
        dt.js("document.querySelector('button[data-add-host]').click()")
        dt.wait("the new host's key", "document.getElementById('notice').textContent.includes('my-name = new-host')")
        key = dt.js("document.querySelector('#notice code').textContent")
        r = urllib.request.Request(f"http://{plain}/api/ping", data=json.dumps({"server": {"name": "new-host", "key": key}}).encode())
        with urllib.request.urlopen(r, timeout=10) as a:
            same("the added host pings with the key shown", json.load(a), {"pong": 1})
        print("add host: the overview adds one and shows its key")
        # Acknowledge, silence and end the silence through the real server's
        # endpoints (SPEC §9), as an operator does from the service page.
        dt.on_dialog = lambda p: {"accept": True, "promptText": "replacing the disk"}
        dt.goto(f"{LOGIN_URL}/#/services")
        dt.wait("the services", f"{ROWS}.length === 2")
        disk = dt.js("[...document.querySelectorAll('a[href^=\"#/service/\"]')]"
                     ".find(a => a.textContent.includes('disk')).getAttribute('href')")
        dt.goto(f"{LOGIN_URL}/{disk}")
        dt.wait("the Acknowledge button", "!!document.querySelector('button[data-ack]')")
        dt.js("document.querySelector('button[data-ack]').click()")
        dt.wait("the acknowledgement", "document.getElementById('view').textContent.includes('replacing the disk') && "
                "!!document.querySelector('button[data-unack]')")
        dt.js("document.querySelector('button[data-unack]').click()")
        dt.wait("the acknowledgement removed", "!!document.querySelector('button[data-ack]')")
        dt.js("[...document.querySelectorAll('a.button')].find(a => a.textContent === 'Silence').click()")
        dt.wait("the silence form", "document.getElementById('sl-server')?.value === 'web1' && "
                "document.getElementById('sl-service').value === 'disk'")
        dt.js("document.getElementById('sl-comment').value = 'disk swap'; document.querySelector('#silence-form button').click()")
        dt.wait("the active silence", "[...document.querySelectorAll('table.silences')][0]?.textContent.includes('disk swap')")
        dt.js("document.querySelector('button[data-end-silence]').click()")
        dt.wait("the silence ended", "!document.querySelector('button[data-end-silence]')")
        print("acknowledge and silence on the real server: acknowledge, take back, silence, end")

# The server goes away: the open page says so instead of showing stale data.
if len(sys.argv) > 3:
    with Browser() as b:
        dt = b.page()
        dt.goto(f"{BASE}/#/services")
        os.kill(int(sys.argv[3]), 15)
        dt.wait("the cannot-reach banner",
                "!document.getElementById('banner').hidden && "
                "document.getElementById('banner').textContent.includes('Cannot reach the overc server')", 20)
        print("the page warns when it cannot reach the server")
print("e2e-browser: ok")
