// overc web page: plain JavaScript over the /ui/api/ JSON, refreshed in place.
// For the operator on duty: problems first, every state as text and colour,
// an overdue service in a stale look of its own.
"use strict";

const REFRESH_MS = 5000;
const HOUR = 3600e3;
const view = document.getElementById("view");
const banner = document.getElementById("banner");
let info = { actions: false, alert_plugins: [] };
let status = null; // the last /ui/api/status/
let rows = []; // one entry per service, see flatten()
let mounted = ""; // page/id whose skeleton is in the view
let timer = null;
let silencesApi = null; // true: /ui/api/silences exists; false: it answered 404
let hostNotice = ""; // the key of a host just added, shown once
const changedAt = new Map(); // service id -> when this page saw its status change
let lastStatus = new Map(); // service id -> status at the previous refresh
let stateSince = new Map(); // service id -> {state, at} from the alerts of the last 24 h
let sinceKey = ""; // what stateSince was computed from
let sinceAt = 0;
let parseMs = 0; // reading and parsing the last answer

// --- small helpers ---------------------------------------------------------

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// "12 s", "5 min", "3 h", "2 d".
function span(ms) {
  const s = Math.max(0, ms / 1000);
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function ago(iso) {
  if (!iso) return "never";
  const d = Date.now() - Date.parse(iso);
  return d < -1000 ? `in ${span(-d)}` : `${span(d)} ago`;
}

// A time whose text is kept current by updateTimes(), so the HTML of a row
// does not change as time passes (and the row is not rebuilt).
function when(iso) {
  if (!iso) return "never";
  return `<time datetime="${esc(iso)}"></time>`;
}

function updateTimes(root) {
  const now = Date.now();
  for (const t of root.querySelectorAll("time[datetime]")) {
    const at = Date.parse(t.dateTime);
    let text;
    if (t.className === "for") text = span(now - at);
    else text = now - at < -1000 ? `in ${span(at - now)}` : `${span(now - at)} ago`;
    if (t.textContent !== text) t.textContent = text;
  }
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function firstLine(s) {
  return String(s ?? "").split("\n")[0];
}

// The text of a plugin's output without its perfdata (`TEXT | PERFDATA`).
function infoText(s) {
  return firstLine(s).split("|")[0].trim();
}

// The first report of a service is stored with the original's text,
// `State changed: "(?)" -> "WARN"`; the page says what it means.
function alertMessage(a) {
  const first = /^State changed: "\(\?\)" -> "([A-Z]+)"$/.exec(a.message || "");
  return first ? `First report: ${first[1]}` : a.message;
}

// What an alert's service was when it was raised (the read API's `state`
// and `state_info`), or "".
function alertState(a) {
  if (!a.state) return "";
  const info = firstLine(a.state_info);
  return `<div class="muted">${esc(a.state)}${info ? ": " + esc(info) : ""}</div>`;
}

// Alerts about a server itself and about each of its services.
function serverAlerts(srv) {
  return srv.n_alerts + srv.services.reduce((n, svc) => n + svc.n_alerts, 0);
}

// `*` and `?` patterns, as silences match names.
function glob(pattern, name) {
  const re = "^" + String(pattern).replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$";
  return new RegExp(re).test(name);
}

// Every request URL is built on location.origin, never relative to the page.
// Opened as http://user:pass@host/, the page's own URL carries the
// credentials, a relative URL resolved against it keeps them, and fetch()
// refuses any URL with credentials in it (Fetch standard: "Request cannot be
// constructed from a URL that includes credentials"), so every call failed.
// The origin never holds credentials, and the browser still sends the login
// it used for the page with each same-origin request.
function sameOrigin(path) {
  return new URL(path, location.origin);
}

async function api(path, opts = {}) {
  const r = await fetch(sameOrigin(path), { ...opts, headers: { "X-Overc-Action": "1", ...(opts.body ? { "Content-Type": "application/json" } : {}) } });
  const t0 = performance.now();
  const body = await r.json().catch(() => ({}));
  parseMs = performance.now() - t0;
  if (!r.ok) {
    const e = new Error(body.error || `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return body;
}

function showBanner(text) {
  banner.hidden = !text;
  banner.textContent = text || "";
}

// `#/page/id?key=value…`: the page and its parameters (filters, sort,
// hours), so a link can be shared.
function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [path, query] = h.split("?");
  const [page, id] = path.split("/");
  return { page: page || "overview", id, params: new URLSearchParams(query || "") };
}

function setParams(changes) {
  const r = route();
  for (const [k, v] of Object.entries(changes)) {
    if (v === "" || v === null || v === undefined || v === false) r.params.delete(k);
    else r.params.set(k, v === true ? "1" : v);
  }
  const path = r.page === "overview" ? "" : r.page + (r.id ? "/" + r.id : "");
  const q = r.params.toString();
  history.replaceState(null, "", `#/${path}${q ? "?" + q : ""}`);
}

// --- states ------------------------------------------------------------------

// A service's status: its state, or "overdue" when it missed its deadline
// (its last state is stale then), or "none" before its first report.
// Worst first: FAIL, UNK, WARN, overdue, OK.
const RANK = { FAIL: 0, UNK: 1, WARN: 2, overdue: 3, OK: 4, none: 5 };
const WORD = { FAIL: "FAIL", UNK: "UNK", WARN: "WARN", overdue: "overdue", OK: "OK", none: "no report" };

function statusOf(svc) {
  const st = svc.state;
  if (!st) return "none";
  if (st.timed_out) return "overdue";
  return st.state in RANK ? st.state : "UNK";
}

function badge(status, extra = "") {
  return `<span class="badge s-${esc(status)}">${esc(WORD[status] || status || "—")}</span>${extra}`;
}

// The state cell: an overdue service says so, with its last state beside.
function stateBadge(svc, status) {
  if (status === "overdue") return badge("overdue", ` <span class="last">last ${esc(svc.state.state)}</span>`);
  return badge(status);
}

// soft, flapping, silenced, acknowledged: the policy's marks (SPEC §9),
// shown when the read API has them.
function marks(svc) {
  let out = "";
  if (svc.soft) out += `<span class="mark" title="not yet confirmed by the service's retries">soft</span>`;
  if (svc.flapping) out += `<span class="mark" title="changing state often: notifications held back">flapping</span>`;
  if (svc.silenced) out += `<span class="mark" title="a silence holds back its notifications">silenced</span>`;
  if (svc.ack) out += `<span class="mark" title="acknowledged by ${esc(svc.ack.author)}: ${esc(svc.ack.comment)}">ack</span>`;
  return out;
}

// Since when a service is in its status: the read API's `since` when it has
// one; for an overdue service its deadline; else its newest state change in
// the alerts of the last 24 h, or the change this page saw. null: unknown
// (no change in the last 24 h).
function sinceOf(svc, status) {
  const st = svc.state;
  if (!st) return null;
  if (st.since) return Date.parse(st.since);
  if (status === "overdue" && svc.period) return Date.parse(st.rtime) + svc.period * 1000;
  const s = stateSince.get(svc.id);
  if (s && s.state === st.state) return s.at;
  return changedAt.get(svc.id) ?? null;
}

// The alerts of the last 24 h give each service's newest state change; they
// are fetched again only when the alert count moved, or after a minute.
async function loadSince(st) {
  const key = `${st.stats.n_alerts}`;
  if (key === sinceKey && Date.now() - sinceAt < 60e3) return;
  const data = await api("/ui/api/status/alerts/?hours=24");
  const m = new Map();
  for (const a of data.alerts) {
    if (a.service_id && a.channel === "service:state" && !m.has(a.service_id)) m.set(a.service_id, { state: a.event, at: Date.parse(a.ctime) });
  }
  stateSince = m;
  sinceKey = key;
  sinceAt = Date.now();
}

function flatten(st) {
  const out = [];
  const now = Date.now();
  const next = new Map();
  for (const srv of st.servers) {
    const sk = srv.title.toLowerCase();
    for (const svc of srv.services) {
      const status = statusOf(svc);
      const prev = lastStatus.get(svc.id);
      if (prev !== undefined && prev !== status) changedAt.set(svc.id, now);
      next.set(svc.id, status);
      const s = svc.state;
      const text = s ? infoText(s.info) : "";
      out.push({
        id: svc.id, srv, svc, status, rank: RANK[status], since: sinceOf(svc, status), text,
        server: sk, service: svc.title.toLowerCase(),
        hay: `${srv.title} ${srv.name} ${svc.title} ${svc.name} ${WORD[status]} ${text}`.toLowerCase(),
      });
    }
  }
  lastStatus = next;
  return out;
}

// Worst first, then longest in that status, then by name.
function byDefault(a, b) {
  return a.rank - b.rank || (a.since ?? -Infinity) - (b.since ?? -Infinity) ||
    (a.server < b.server ? -1 : a.server > b.server ? 1 : 0) || (a.service < b.service ? -1 : a.service > b.service ? 1 : 0) || a.id - b.id;
}

const strCmp = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
// The services table's columns: sort key and natural direction.
const COLUMNS = [
  { key: "server", label: "Server", cmp: (a, b) => strCmp(a.server, b.server) },
  { key: "service", label: "Service", cmp: (a, b) => strCmp(a.service, b.service) },
  { key: "state", label: "State", cmp: () => 0 },
  { key: "for", label: "For", cmp: (a, b) => (a.since ?? -Infinity) - (b.since ?? -Infinity), title: "how long it has been in this state" },
  { key: "info", label: "Info", cmp: (a, b) => strCmp(a.text.toLowerCase(), b.text.toLowerCase()) },
  { key: "period", label: "Period", cmp: (a, b) => (a.svc.period ?? -1) - (b.svc.period ?? -1), cls: "hide-narrow" },
  { key: "seen", label: "Seen", cmp: (a, b) => (a.svc.state ? a.svc.state.seen_ago : Infinity) - (b.svc.state ? b.svc.state.seen_ago : Infinity) },
  { key: "alerts", label: "Alerts 24 h", cmp: (a, b) => b.svc.n_alerts - a.svc.n_alerts, title: "alerts of the last 24 hours" },
];

function sortRows(list, params) {
  const col = COLUMNS.find(c => c.key === params.get("sort"));
  const rev = params.get("rev") === "1" ? -1 : 1;
  if (!col || col.key === "state") return list.sort((a, b) => rev * byDefault(a, b));
  return list.sort((a, b) => rev * col.cmp(a, b) || byDefault(a, b));
}

// What the filter box, the "problems only" switch and the summary's links
// (`show=`) keep.
function filterRows(list, params) {
  const words = (params.get("q") || "").toLowerCase().split(/\s+/).filter(Boolean);
  const problems = params.get("problems") === "1";
  const show = params.get("show");
  return list.filter(r => {
    if (problems && r.rank > RANK.overdue) return false;
    if (show) {
      if (show in RANK ? r.status !== show : !(show === "acked" ? r.svc.ack : r.svc[show])) return false;
    }
    for (const w of words) if (!r.hay.includes(w)) return false;
    return true;
  });
}

// --- keyed rendering -----------------------------------------------------------

// Children of one parent, each built from an HTML string and kept by key:
// a refresh rebuilds only the items whose HTML changed (parsed together, in
// one template), moves the others into order and drops the rest. An item
// whose status changed is built again with the class `changed` (a brief
// highlight).
class Keyed {
  constructor(parent) {
    this.parent = parent;
    this.cache = new Map(); // key -> {el, html, status}
    this.built = 0;
  }

  render(items, live) {
    const build = [];
    for (const it of items) {
      const e = this.cache.get(it.key);
      if (!e || e.html !== it.html) build.push(it);
    }
    if (build.length) {
      const tpl = document.createElement("template");
      tpl.innerHTML = build.map(it => it.html).join("");
      const els = [...tpl.content.children];
      build.forEach((it, i) => {
        const old = this.cache.get(it.key);
        const el = els[i];
        if (old && it.status !== undefined && old.status !== it.status) el.classList.add("changed");
        if (old && old.el.parentNode === this.parent) this.parent.replaceChild(el, old.el);
        this.cache.set(it.key, { el, html: it.html, status: it.status });
      });
    }
    let child = this.parent.firstElementChild;
    if (!child) {
      // The first render: every item at once, in one insertion.
      const all = document.createDocumentFragment();
      for (const it of items) all.append(this.cache.get(it.key).el);
      this.parent.append(all);
      this.built = build.length;
      return build.length;
    }
    for (const it of items) {
      const el = this.cache.get(it.key).el;
      if (el === child) child = child.nextElementSibling;
      else this.parent.insertBefore(el, child);
    }
    while (child) {
      const next = child.nextElementSibling;
      child.remove();
      child = next;
    }
    if (live) for (const k of this.cache.keys()) if (!live.has(k)) this.cache.delete(k);
    this.built = build.length;
    return build.length;
  }
}

// --- pages -------------------------------------------------------------------

function summary(list) {
  const n = { FAIL: 0, UNK: 0, WARN: 0, overdue: 0, OK: 0, none: 0, silenced: 0, flapping: 0, acked: 0 };
  let policy = false;
  for (const r of list) {
    n[r.status]++;
    if ("silenced" in r.svc || "flapping" in r.svc || "ack" in r.svc) policy = true;
    if (r.svc.silenced) n.silenced++;
    if (r.svc.flapping) n.flapping++;
    if (r.svc.ack) n.acked++;
  }
  const link = (show, label, count) => `<li><a href="#/services?show=${show}" data-count="${show}">${label}<b>${count}</b></a></li>`;
  let out = ["FAIL", "UNK", "WARN", "overdue", "OK"].map(s => link(s, badge(s), n[s])).join("");
  if (n.none) out += link("none", badge("none"), n.none);
  // The policy's marks (SPEC §9) once the read API has them.
  if (policy) out += link("silenced", "silenced", n.silenced) + link("flapping", "flapping", n.flapping) + link("acked", "acknowledged", n.acked);
  out += `<li><a href="#/services" data-count="all">all services <b>${list.length}</b></a></li>`;
  return `<ul class="summary" aria-label="Services by state">${out}</ul>`;
}

function worstOf(list) {
  let w = "none";
  for (const r of list) if (r.rank < RANK[w]) w = r.status;
  return w;
}

function serverCard(srv, mine) {
  const worst = worstOf(mine);
  const markers = mine.map(r => {
    const title = `${r.svc.title}: ${r.status === "overdue" ? `overdue (last ${r.svc.state.state})` : WORD[r.status]}`;
    return `<a href="#/service/${r.id}" class="marker s-${r.status}" data-status="${r.status}" title="${esc(title)}">${esc(r.svc.title)} <span class="st">· ${WORD[r.status]}</span></a>`;
  }).join("");
  const nOverdue = mine.filter(r => r.status === "overdue").length;
  return `<section class="card server w-${worst}" data-server="${esc(srv.name)}" data-worst="${worst}" aria-label="${esc(srv.title)}: ${WORD[worst]}">
    <h2><a href="#/server/${srv.id}">${esc(srv.title)}</a> ${badge(worst)} ${srv.title !== srv.name ? `<span class="muted">${esc(srv.name)}</span>` : ""}</h2>
    <div class="meta">${esc(srv.ip)} · seen ${when(srv.last_seen)} · <span class="count">${plural(serverAlerts(srv), "alert")} / 24 h</span>${nOverdue ? ` · <b>${nOverdue} overdue</b>` : ""}</div>
    <div class="markers">${markers}</div></section>`;
}

let cards = null;
function overview(st, fresh) {
  if (fresh) {
    view.innerHTML = `<h1>Overview ${info.actions ? '<button data-add-host="1">Add host</button>' : ""}</h1><div id="notice"></div><div id="summary"></div><div class="grid" id="cards"></div>`;
    cards = new Keyed(view.querySelector("#cards"));
  }
  const notice = view.querySelector("#notice");
  if (notice.innerHTML !== hostNotice) notice.innerHTML = hostNotice;
  if (!st.servers.length) {
    view.querySelector("#summary").innerHTML = `<p class="muted">No server has reported yet. Push a status with <code>overcli</code> or <code>curl</code>${info.actions ? ", or add a host" : ""}.</p>`;
    cards.render([]);
    return;
  }
  const sum = summary(rows);
  const el = view.querySelector("#summary");
  if (el.innerHTML !== sum) el.innerHTML = sum;
  const byServer = new Map(st.servers.map(s => [s.id, []]));
  for (const r of [...rows].sort(byDefault)) byServer.get(r.srv.id).push(r);
  const items = st.servers.map(srv => {
    const mine = byServer.get(srv.id);
    return { key: srv.id, rank: RANK[worstOf(mine)], name: srv.title.toLowerCase(), html: serverCard(srv, mine) };
  });
  items.sort((a, b) => a.rank - b.rank || strCmp(a.name, b.name) || a.key - b.key);
  cards.render(items, new Set(items.map(i => i.key)));
}

function serviceRow(r, withServer) {
  const { srv, svc } = r;
  const st = svc.state;
  const sinceIso = r.since !== null ? new Date(r.since).toISOString() : null;
  const forCell = sinceIso ? `<span class="narrow-only">for&nbsp;</span><time class="for" datetime="${sinceIso}"></time>`
    : r.rank <= RANK.overdue ? `<span title="no change in the last 24 hours">&gt; 24 h</span>` : "";
  return `<tr data-id="${r.id}" data-status="${r.status}">${withServer ? `<td><a href="#/server/${srv.id}">${esc(srv.title)}</a></td>` : ""}
    <td><a href="#/service/${svc.id}">${esc(svc.title)}</a></td>
    <td class="nowrap">${stateBadge(svc, r.status)}${marks(svc)}</td>
    <td class="for">${forCell}</td>
    <td class="info"${st && st.info !== r.text ? ` title="${esc(st.info)}"` : ""}>${esc(r.text)}</td>
    <td class="num hide-narrow">${svc.period ? esc(svc.period) + " s" : "—"}</td>
    <td class="seen">${st ? when(st.rtime) : "never"}</td>
    <td class="num" title="alerts of the last 24 hours">${svc.n_alerts}<span class="narrow-only">&nbsp;${svc.n_alerts === 1 ? "alert" : "alerts"} / 24 h</span></td></tr>`;
}

function headers(params, withServer) {
  const key = params.get("sort") || "state";
  const rev = params.get("rev") === "1";
  return COLUMNS.filter(c => withServer || c.key !== "server").map(c => {
    const sorted = c.key === key ? (rev ? "descending" : "ascending") : "none";
    return `<th class="${c.cls || ""}" aria-sort="${sorted}"${c.title ? ` title="${c.title}"` : ""}><button data-sort="${c.key}">${c.label}</button></th>`;
  }).join("");
}

// The services table of the services page and of a server's page.
let table = null;
function mountTable(where, withServer) {
  const params = route().params;
  const options = COLUMNS.filter(c => withServer || c.key !== "server").map(c => `<option value="${c.key}">${c.label}</option>`).join("");
  where.innerHTML = `<div class="toolbar" role="search">
      <label class="sr-only" for="filter">Filter services</label>
      <input type="search" id="filter" placeholder="Filter: server, service, state, info" value="${esc(params.get("q") || "")}">
      <label><input type="checkbox" id="problems" ${params.get("problems") === "1" ? "checked" : ""}> Problems only</label>
      <span id="show"></span>
      <label class="narrow-only">Sort by <select id="sort">${options}</select></label>
      <span id="shown" class="muted" aria-live="polite"></span></div>
    <table class="services"><caption class="sr-only">Services, worst first</caption><thead><tr></tr></thead><tbody></tbody></table>`;
  table = { keyed: new Keyed(where.querySelector("tbody")), withServer, where };
}

function renderTable(list) {
  const t0 = performance.now();
  const params = route().params;
  const { where, withServer } = table;
  const head = where.querySelector("thead tr");
  const h = headers(params, withServer);
  if (head.innerHTML !== h) head.innerHTML = h;
  where.querySelector("#sort").value = params.get("sort") || "state";
  const show = params.get("show");
  const showEl = where.querySelector("#show");
  const showHtml = show ? `showing ${esc(WORD[show] || show)} <a href="#" data-unshow="1">show all</a>` : "";
  if (showEl.innerHTML !== showHtml) showEl.innerHTML = showHtml;
  const t1 = performance.now();
  const shown = sortRows(filterRows(list, params), params);
  const t2 = performance.now();
  const items = shown.map(r => ({ key: r.id, status: r.status, html: serviceRow(r, withServer) }));
  const t3 = performance.now();
  const built = table.keyed.render(items, new Set(list.map(r => r.id)));
  const t4 = performance.now();
  updateTimes(table.keyed.parent);
  // What a refresh of this table cost (scripts/page_render.py reads it).
  table.stats = { rows: list.length, shown: shown.length, built, filter_sort: t2 - t1, html: t3 - t2, dom: t4 - t3, times: performance.now() - t4, table: performance.now() - t0 };
  where.querySelector("#shown").textContent = `${shown.length} of ${list.length}`;
}

function servicesPage(fresh) {
  if (fresh) {
    view.innerHTML = `<h1>Services</h1><div id="table"></div>`;
    mountTable(view.querySelector("#table"), true);
  }
  renderTable(rows);
}

// --- a server ------------------------------------------------------------------

async function getSilences() {
  try {
    const data = await api("/ui/api/silences");
    silencesApi = true;
    return data.silences || [];
  } catch (e) {
    if (e.status === 404) silencesApi = false;
    return null;
  }
}

function silenceLink(server, service) {
  const q = new URLSearchParams({ server, ...(service ? { service } : {}) });
  return `<a class="button" href="#/silences?${q}">Silence${service ? "" : " host"}</a>`;
}

async function serverPage(id, fresh) {
  const srv = status.servers.find(s => String(s.id) === id);
  if (!srv) {
    view.innerHTML = `<h1>Server</h1><p>No server with id ${esc(id)}: it may have been deleted. <a href="#/">Overview</a></p>`;
    mounted = "";
    return;
  }
  const hours = Math.max(1, Number(route().params.get("hours")) || 24);
  const [alerts, silences] = await Promise.all([api(`/ui/api/status/alerts/server/${srv.id}?hours=${hours}`), getSilences()]);
  const mine = rows.filter(r => r.srv.id === srv.id);
  if (fresh) {
    view.innerHTML = `<div id="head"></div><h2>Services</h2><div id="table"></div><div id="alerts"></div><div id="silences"></div>`;
    mountTable(view.querySelector("#table"), false);
  }
  const worst = worstOf(mine);
  const acts = info.actions ? `<div class="actions"><button data-rename-server="${srv.id}">Rename</button>
    <button class="danger" data-delete-server="${srv.id}">Delete</button>
    ${silencesApi ? silenceLink(srv.name) : ""}<button data-test-alert="1">Send test alert</button></div>` : "";
  const head = `<h1>${esc(srv.title)} ${badge(worst)}</h1>
    <p class="muted">name ${esc(srv.name)} · address ${esc(srv.ip)} · first seen ${when(srv.first_seen)} · last seen ${when(srv.last_seen)}</p>${acts}`;
  setHtml("#head", head);
  renderTable(mine);
  setHtml("#alerts", `<h2>Alerts of the last ${hours} hours</h2>${alertTable(alerts.alerts, false, hours)}${moreButton(hours)}`);
  setHtml("#silences", silences ? silenceSection(silences.filter(s => glob(s.server, srv.name)), true) : "");
}

// Sets an element's HTML only when it changed (the last one is kept per
// element), so a refresh with nothing new leaves the DOM alone.
const lastHtml = new WeakMap();
function setHtml(sel, html) {
  const el = typeof sel === "string" ? view.querySelector(sel) : sel;
  if (el && lastHtml.get(el) !== html) {
    el.innerHTML = html;
    lastHtml.set(el, html);
  }
}

function moreButton(hours) {
  return `<div class="more"><button data-more="${hours + 24}">Load 24 h more</button><span class="muted">showing ${hours} h</span></div>`;
}

// --- a service -------------------------------------------------------------------

async function servicePage(id) {
  const hours = Math.max(1, Number(route().params.get("hours")) || 24);
  const [one, grouped, states, alerts, silences] = await Promise.all([
    api(`/ui/api/status/service/${id}`),
    api(`/ui/api/status/service/${id}/states?hours=${hours}&groups=yes`),
    api(`/ui/api/status/service/${id}/states?hours=${hours}`),
    api(`/ui/api/status/alerts/service/${id}?hours=${hours}`),
    getSilences(),
  ]);
  const srv = one.servers[0];
  const svc = srv.services[0];
  const st = svc.state || {};
  const s = statusOf(svc);
  const row = rows.find(r => r.id === svc.id);
  const since = row && row.since !== null ? new Date(row.since).toISOString() : null;
  const problem = RANK[s] <= RANK.overdue;
  let acts = "";
  if (info.actions) {
    acts = `<button data-rename-service="${svc.id}">Rename</button><button class="danger" data-delete-service="${svc.id}">Delete</button>`;
    // Acknowledgements (SPEC §9) once the read API shows them.
    if ("ack" in svc) {
      if (svc.ack) acts += `<button data-unack="${svc.id}">Remove acknowledgement</button>`;
      else if (problem) acts += `<button data-ack="${svc.id}">Acknowledge</button>`;
    }
    if (silencesApi) acts += silenceLink(srv.name, svc.name);
    acts = `<div class="actions">${acts}</div>`;
  }
  const ack = svc.ack ? `<p class="notice">Acknowledged by <b>${esc(svc.ack.author)}</b> ${when(svc.ack.ctime)}: ${esc(svc.ack.comment)}</p>` : "";
  const mine = silences ? silences.filter(x => glob(x.server, srv.name) && (!x.service || glob(x.service, svc.name))) : null;
  // A group is known by its lowest id: its highest grows as reports come in.
  const open = new Set([...view.querySelectorAll("tr.group.open")].map(r => r.dataset.id));
  const html = `<h1><a href="#/server/${srv.id}">${esc(srv.title)}</a> / ${esc(svc.title)} ${stateBadge(svc, s)}${marks(svc)}</h1>
    <p class="muted">period ${svc.period ? esc(svc.period) + " s" : "none"} · last report ${st.rtime ? when(st.rtime) : "never"}${since ? ` · ${esc(WORD[s])} since ${when(since)}` : ""}</p>
    ${ack}${acts}
    ${st.info !== undefined ? `<div class="card"><div class="info" style="white-space:pre-wrap">${esc(st.info.split("|")[0].trim() || "(no text)")}</div>${perfTable(st.perfdata)}</div>` : ""}
    <h2>Last ${hours} hours</h2>${timeline(states.states, hours, s === "overdue" ? Date.parse(st.rtime) + svc.period * 1000 : null)}
    ${charts(states.states, hours)}
    <h2>History</h2>${historyTable(grouped.states, states.states, open, hours)}${moreButton(hours)}
    <h2>Alerts</h2>${alertTable(alerts.alerts, false, hours)}
    ${mine ? silenceSection(mine, false) : ""}`;
  setHtml(view, html);
}

function num(v) {
  return v === null || v === undefined ? "" : String(+Number(v).toPrecision(6));
}

function range(r) {
  if (!r) return "";
  return `${r.inside ? "@" : ""}${r.start === null ? "~:" : r.start ? num(r.start) + ":" : ""}${num(r.end)}`;
}

function perfTable(perf) {
  if (!perf || !perf.length) return "";
  const rows = perf.map(p => `<tr><td>${esc(p.label)}</td><td class="num">${num(p.value)}${esc(p.uom)}</td><td>${esc(range(p.warn))}</td><td>${esc(range(p.crit))}</td></tr>`).join("");
  return `<table class="perf"><thead><tr><th>Perfdata</th><th>Value</th><th>Warn</th><th>Crit</th></tr></thead><tbody>${rows}</tbody></table>`;
}

const LEGEND = ["OK", "WARN", "FAIL", "UNK"];
// A strip of the states over the window; an overdue service's time past
// its deadline is stale, not its last state.
function timeline(states, hours, overdueSince) {
  const end = Date.now(), start = end - hours * HOUR;
  const asc = [...states].reverse();
  const spans = asc.map((s, i) => {
    const from = Math.max(start, Date.parse(s.rtime));
    const to = i + 1 < asc.length ? Date.parse(asc[i + 1].rtime) : overdueSince || end;
    const left = ((from - start) / (end - start)) * 100, width = Math.max(0.2, ((to - from) / (end - start)) * 100);
    return `<span class="s-${esc(s.state)}" style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%" title="${esc(s.state)} at ${esc(s.rtime)}"></span>`;
  }).join("") + (overdueSince ? `<span class="s-overdue" style="left:${Math.max(0, ((overdueSince - start) / (end - start)) * 100).toFixed(3)}%;right:0" title="overdue since ${esc(new Date(overdueSince).toISOString())}"></span>` : "");
  const legend = LEGEND.map(s => `<li><i class="s-${s}"></i>${s}</li>`).join("") + `<li><i class="s-overdue"></i>overdue</li><li><i></i>no report</li>`;
  return `<div class="timeline" role="img" aria-label="states over the last ${hours} hours">${spans}</div>
    <div class="axis"><span>${hours} h ago</span><span>${hours / 2} h ago</span><span>now</span></div>
    <ul class="legend" aria-label="Timeline legend">${legend}</ul>`;
}

function clock(t, hours) {
  const d = new Date(t);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  return hours > 24 ? `${d.toLocaleDateString([], { weekday: "short" })} ${hm}` : hm;
}

// One chart per perfdata label: a time axis over the page's window, and
// the warn and crit thresholds of its newest value as dashed lines.
function charts(states, hours) {
  const series = new Map();
  for (const s of [...states].reverse()) {
    for (const p of s.perfdata || []) {
      if (p.value === null) continue;
      const key = p.label + (p.uom ? ` (${p.uom})` : "");
      if (!series.has(key)) series.set(key, { label: p.label, pts: [], last: p });
      const e = series.get(key);
      e.pts.push([Date.parse(s.rtime), p.value]);
      e.last = p;
    }
  }
  if (!series.size) return "";
  const W = 320, H = 130, L = 44, R = 312, T = 8, B = 104;
  // The time axis runs from the oldest value in the window (at least ten
  // minutes back) to now, so a young service's chart is not a dot at the edge.
  const x1 = Date.now();
  const oldest = Math.min(...[...series.values()].map(e => e.pts[0][0]));
  const x0 = Math.min(x1 - 10 * 60e3, Math.max(x1 - hours * HOUR, oldest));
  const out = [...series].map(([key, { pts, last }]) => {
    const lines = [];
    for (const [kind, r] of [["warn", last.warn], ["crit", last.crit]]) {
      if (!r) continue;
      if (r.end !== null) lines.push([kind, r.end]);
      if (r.start !== null && r.start !== 0) lines.push([kind, r.start]);
    }
    const ys = pts.map(p => p[1]).concat(lines.map(l => l[1]));
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
    const pad = (y1 - y0) * 0.05;
    y0 = y0 >= 0 ? Math.max(0, y0 - pad) : y0 - pad;
    y1 += pad;
    const X = t => L + ((t - x0) / (x1 - x0)) * (R - L);
    const Y = v => B - ((v - y0) / (y1 - y0)) * (B - T);
    const poly = pts.map(([t, v]) => `${X(t).toFixed(1)},${Y(v).toFixed(1)}`).join(" ");
    const ticks = [0, 0.25, 0.5, 0.75, 1].map(f => {
      const t = x0 + f * (x1 - x0), x = X(t).toFixed(1);
      return `<line class="grid-line" x1="${x}" x2="${x}" y1="${T}" y2="${B}"/><text x="${x}" y="${B + 14}" text-anchor="${f === 0 ? "start" : f === 1 ? "end" : "middle"}">${esc(clock(t, hours))}</text>`;
    }).join("");
    const th = lines.map(([kind, v]) => `<line class="th-${kind}" x1="${L}" x2="${R}" y1="${Y(v).toFixed(1)}" y2="${Y(v).toFixed(1)}"><title>${kind} ${num(v)}</title></line>`).join("");
    const key2 = lines.length ? " · " + lines.map(([kind, v]) => `${kind} ${num(v)}`).join(" · ") : "";
    return `<div class="card chart" data-label="${esc(last.label)}"><div class="label">${esc(key)}</div>
      <svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(key)} since ${esc(clock(x0, hours))}${esc(key2)}">
      <line class="grid-line" x1="${L}" x2="${R}" y1="${B}" y2="${B}"/>${ticks}
      <text x="${L - 4}" y="${T + 8}" text-anchor="end">${esc(num(y1))}</text><text x="${L - 4}" y="${B}" text-anchor="end">${esc(num(y0))}</text>
      ${th}<polyline class="line" points="${poly}"/></svg>
      <div class="key">last ${esc(num(pts[pts.length - 1][1]))}${esc(last.uom)}${esc(key2)}</div></div>`;
  }).join("");
  return `<h2>Performance data</h2><div class="charts">${out}</div>`;
}

function stateRow(s) {
  const alerts = (s.alerts || []).map(a => `<div class="muted">⚑ ${esc(alertMessage(a))}</div>`).join("");
  return `<tr class="state" data-id="${s.id}"><td class="nowrap">${when(s.rtime)}</td><td>${badge(s.state)}</td><td class="info">${esc(s.info)}${alerts}</td></tr>`;
}

// The history folded by the read API (`groups=yes`, as OverC 1.0.9: each
// run's first and last records shown, the ones between as one group row
// "lowest-highest"); a group unfolds in place from the unfolded history.
function historyTable(grouped, all, open, hours) {
  if (!grouped.length) return `<p class="muted">No reports in the last ${hours} hours.</p>`;
  const rows = grouped.map(s => {
    if (!s.group) return stateRow(s);
    const [a, b] = s.group.split("-").map(Number);
    const lo = Math.min(a, b), hi = Math.max(a, b);
    const members = all.filter(x => x.id >= lo && x.id <= hi).map(stateRow).join("");
    const isOpen = open.has(String(s.id));
    return `<tr class="group ${isOpen ? "open" : ""}" data-group="${esc(s.group)}" data-id="${esc(s.id)}"><td colspan="3"><button aria-expanded="${isOpen}">${s.group_count} × ${esc(s.state)} (folded; click to unfold)</button></td></tr>` +
      members.replace(/<tr class="state"/g, `<tr class="state member" data-member-of="${esc(s.group)}" ${isOpen ? "" : "hidden"}`);
  }).join("");
  return `<table class="history"><thead><tr><th>Time</th><th>State</th><th>Info</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// Each notification's delivery per plugin (SPEC §3), when the read API has
// it; else whether a plugin took it.
function deliveries(a) {
  if (Array.isArray(a.deliveries)) {
    if (!a.deliveries.length) return `<span class="muted">not notified</span>`;
    return `<div class="deliveries">${a.deliveries.map(d => {
      let what = d.state;
      if (d.state === "pending") what = d.next_try ? `pending, next try ${when(d.next_try)}` : "pending";
      if (d.state === "failing") what = `failing (${d.attempts} tries)${d.next_try ? `, next ${when(d.next_try)}` : ""}`;
      if (d.state === "given-up") what = `given up after ${d.attempts} tries`;
      return `<span class="dl dl-${esc(d.state)}" data-plugin="${esc(d.plugin)}"${d.error ? ` title="${esc(d.error)}"` : ""}>${esc(d.plugin)}: ${what}</span>`;
    }).join("")}</div>`;
  }
  if (!info.alert_plugins || !info.alert_plugins.length) return `<span class="muted">recorded</span>`;
  return a.delivered ? `<span class="dl dl-delivered">delivered</span>` : `<span class="dl dl-pending">not delivered yet</span>`;
}

function alertTable(alerts, withNames, hours) {
  if (!alerts.length) return `<p class="muted">No alerts in the last ${hours} hours.</p>`;
  const rows = alerts.map(a => `<tr class="alert" data-id="${a.id}" data-severity="${esc(a.severity)}"><td class="nowrap">${when(a.ctime)}</td>
    ${withNames ? `<td>${a.server_id ? `<a href="#/server/${a.server_id}">${esc(a.server)}</a>` : esc(a.server || "overc")}</td><td>${a.service_id ? `<a href="#/service/${a.service_id}">${esc(a.service)}</a>` : ""}</td>` : ""}
    <td>${badge(a.severity)}${a.soft ? '<span class="mark">soft</span>' : ""}${a.silenced ? '<span class="mark">silenced</span>' : ""}</td>
    <td class="hide-narrow">${esc(a.channel)}/${esc(a.event)}</td><td class="info">${esc(alertMessage(a))}${alertState(a)}</td><td>${deliveries(a)}</td></tr>`).join("");
  return `<table class="alerts"><thead><tr><th>Time</th>${withNames ? "<th>Server</th><th>Service</th>" : ""}<th>Severity</th>
    <th class="hide-narrow">Event</th><th>Message</th><th>Notified</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// --- alerts ------------------------------------------------------------------------

async function alertsPage(fresh) {
  const p = route().params;
  const hours = Math.max(1, Number(p.get("hours")) || 24);
  const data = await api(`/ui/api/status/alerts/?hours=${hours}`);
  const server = p.get("server") || "", service = p.get("service") || "", severity = p.get("severity") || "";
  const servers = status.servers.map(s => s.name);
  const svcNames = [...new Set(rows.filter(r => !server || r.srv.name === server).map(r => r.svc.name))].sort();
  const opt = (v, sel, label = v) => `<option value="${esc(v)}" ${v === sel ? "selected" : ""}>${esc(label)}</option>`;
  const filters = `<label>Server <select name="server"><option value="">all</option>${servers.map(s => opt(s, server)).join("")}</select></label>
    <label>Service <select name="service"><option value="">all</option>${svcNames.map(s => opt(s, service)).join("")}</select></label>
    <label>Severity <select name="severity"><option value="">all</option>${opt("problems", severity, "problems (not OK)")}${["FAIL", "UNK", "WARN", "OK"].map(s => opt(s, severity)).join("")}</select></label>`;
  if (fresh) view.innerHTML = `<h1 id="title"></h1><div class="toolbar filters" role="search"></div><div id="list"></div>`;
  const bar = view.querySelector(".filters");
  // The selects are rebuilt only when their choices change, so an open one stays open.
  setHtml(bar, filters + `<span id="shown" class="muted" aria-live="polite"></span>`);
  const shown = data.alerts.filter(a => (!server || a.server === server) && (!service || a.service === service) &&
    (!severity || (severity === "problems" ? a.severity !== "OK" : a.severity === severity)));
  view.querySelector("#title").textContent = `Alerts of the last ${hours} hours`;
  view.querySelector("#shown").textContent = `${shown.length} of ${data.alerts.length}`;
  setHtml("#list", alertTable(shown, true, hours) + moreButton(hours));
}

// --- silences (SPEC §9) ------------------------------------------------------------

function silenceSection(list, withForm) {
  const active = list.filter(s => s.active), recent = list.filter(s => !s.active);
  const table = (items, ended) => !items.length ? `<p class="muted">None.</p>` :
    `<table class="silences"><thead><tr><th>Server</th><th>Service</th><th>From</th><th>${ended ? "Ended" : "Ends"}</th><th>Comment</th><th>By</th>${!ended && info.actions ? '<th><span class="sr-only">Action</span></th>' : ""}</tr></thead><tbody>${items.map(s => `<tr data-id="${s.id}">
      <td>${esc(s.server)}</td><td>${esc(s.service || "*")}</td><td class="nowrap">${when(s.starts)}</td><td class="nowrap">${when(s.ends)}</td>
      <td>${esc(s.comment)}</td><td>${esc(s.author || "")}</td>${!ended && info.actions ? `<td><button data-end-silence="${s.id}">End</button></td>` : ""}</tr>`).join("")}</tbody></table>`;
  if (!withForm && !list.length) return "";
  return `<h2>Silences: active</h2>${table(active, false)}<h2>Silences: ended in the last 24 hours</h2>${table(recent, true)}`;
}

const DURATIONS = [["900", "15 min"], ["3600", "1 h"], ["7200", "2 h"], ["14400", "4 h"], ["28800", "8 h"], ["86400", "1 day"], ["604800", "7 days"]];
async function silencesPage(fresh) {
  const list = await getSilences();
  if (list === null) {
    view.innerHTML = `<h1>Silences</h1><p class="muted">${silencesApi === false
      ? "Silences are not available on this server yet: it has no silences API (<code>/ui/api/silences</code> answered 404)."
      : "The silences could not be read."}</p>`;
    mounted = "";
    return;
  }
  const p = route().params;
  if (fresh) {
    const form = info.actions ? `<h2>Silence</h2><form class="silence" id="silence-form">
      <label for="sl-server">Server pattern</label><input id="sl-server" name="server" required value="${esc(p.get("server") || "")}" placeholder="db*">
      <label for="sl-service">Service pattern</label><input id="sl-service" name="service" value="${esc(p.get("service") || "")}" placeholder="all services">
      <label for="sl-duration">Duration</label><select id="sl-duration" name="duration">${DURATIONS.map(([v, l]) => `<option value="${v}" ${v === "3600" ? "selected" : ""}>${l}</option>`).join("")}</select>
      <label for="sl-comment">Comment</label><input id="sl-comment" name="comment" required placeholder="kernel update">
      <div class="wide"><button type="submit">Silence</button> <span class="muted">Notifications of matching services are held back; the events are still recorded. <code>*</code> and <code>?</code> match any text and any one character.</span></div></form>`
      : `<p class="muted">Silences can be made and ended from this page when the server has a <code>[ui]</code> password.</p>`;
    view.innerHTML = `<h1>Silences</h1>${form}<div id="list"></div>`;
  }
  setHtml("#list", silenceSection(list, true));
}

// --- refresh loop ----------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  const { page, id } = route();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page);
  const key = `${page}/${id || ""}`;
  const fresh = key !== mounted;
  try {
    const st = await api("/ui/api/status/");
    const parse = parseMs;
    const lag = st.stats.supervisor_lag;
    showBanner(lag > 60 ? `The supervisor is ${Math.round(lag)} s behind: overdue alerts may be late.` : "");
    status = st;
    if (page === "overview" || page === "services" || page === "server" || page === "service") await loadSince(st);
    const t0 = performance.now();
    rows = flatten(st);
    mounted = key;
    if (page === "services") servicesPage(fresh);
    else if (page === "server" && id) await serverPage(id, fresh);
    else if (page === "service" && id) await servicePage(id);
    else if (page === "alerts") await alertsPage(fresh);
    else if (page === "silences") await silencesPage(fresh);
    else overview(st, fresh);
    updateTimes(view);
    const lead = st.stats.leader;
    const leader = lead ? ` · leader ${[lead.host, lead.listen].filter(Boolean).join(" ")}` : "";
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}${leader}`;
    // Script time of this refresh: the status read and parsed, then from the
    // flattening on (on the services page, all synchronous; pages that fetch
    // more include those waits). scripts/page_render.py reports it.
    const ms = parse + performance.now() - t0;
    window.overcStats = { page, parse, ms, ...(table && page === "services" ? table.stats : {}) };
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (e) {
    if (fresh) mounted = "";
    showBanner(`Cannot reach the overc server (${e.message}); retrying…`);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

// The services table again from the data at hand (a filter or sort changed).
function rerender() {
  if (!status || !table) return;
  renderTable(route().page === "server" ? rows.filter(r => String(r.srv.id) === route().id) : rows);
}

async function act(fn, done) {
  try {
    await fn();
    if (done) done();
    refresh();
  } catch (e) {
    alert(e.message);
  }
}

async function testAlert() {
  const r = await api("/ui/api/test-alert", { method: "POST", body: "{}" });
  alert(r.plugins.length ? r.plugins.map(p => `${p.plugin}: ${p.ok ? "ok" : "FAILED: " + p.failure}`).join("\n") : "No alert plugins are configured.");
}

async function addHost() {
  const name = prompt("Name of the new host (as its monitor will report it):");
  if (!name) return;
  const r = await api("/ui/api/hosts", { method: "POST", body: JSON.stringify({ name }) });
  hostNotice = `<div class="notice" role="status"><b>${esc(r.name)}</b> added. Its key is shown only now; put it in the host's monitor config:
    <pre>[overc]\nserver = ${esc(location.origin)}/\nmy-name = ${esc(r.name)}\nmy-key = <code>${esc(r.key)}</code></pre><button data-dismiss="1">Done</button></div>`;
}

view.addEventListener("click", e => {
  const group = e.target.closest("tr.group");
  if (group) {
    group.classList.toggle("open");
    const isOpen = group.classList.contains("open");
    const b = group.querySelector("button");
    if (b) b.setAttribute("aria-expanded", String(isOpen));
    for (const r of view.querySelectorAll(`tr[data-member-of="${group.dataset.group}"]`)) r.hidden = !isOpen;
    return;
  }
  if (e.target.closest("[data-unshow]")) {
    e.preventDefault();
    setParams({ show: "" });
    rerender();
    return;
  }
  const t = e.target.closest("button");
  if (!t) return;
  const d = t.dataset;
  if (d.sort) {
    const p = route().params;
    const same = (p.get("sort") || "state") === d.sort;
    setParams({ sort: d.sort === "state" ? "" : d.sort, rev: same && p.get("rev") !== "1" });
    rerender();
  }
  if (d.more) {
    setParams({ hours: d.more });
    refresh();
  }
  if (d.dismiss) {
    hostNotice = "";
    refresh();
  }
  if (d.addHost) act(addHost);
  if (d.testAlert) act(testAlert);
  if (d.deleteServer && confirm("Delete this server with all its services, history and alerts?"))
    act(() => api(`/ui/api/item/server/${d.deleteServer}`, { method: "DELETE" }), () => (location.hash = "#/"));
  if (d.deleteService && confirm("Delete this service with its history and alerts?"))
    act(() => api(`/ui/api/item/service/${d.deleteService}`, { method: "DELETE" }), () => (location.hash = "#/services"));
  for (const kind of ["server", "service"]) {
    const id = d[kind === "server" ? "renameServer" : "renameService"];
    if (!id) continue;
    const title = prompt(`New title for this ${kind}:`);
    if (title) act(() => api(`/ui/api/item/${kind}/${id}/title`, { method: "POST", body: JSON.stringify({ title }) }));
  }
  if (d.ack) {
    const comment = prompt("Acknowledge: what is being done about it?");
    if (comment) act(() => api(`/ui/api/item/service/${d.ack}/ack`, { method: "POST", body: JSON.stringify({ comment }) }));
  }
  if (d.unack) act(() => api(`/ui/api/item/service/${d.unack}/ack`, { method: "DELETE" }));
  if (d.endSilence && confirm("End this silence now?")) act(() => api(`/ui/api/silences/${d.endSilence}`, { method: "DELETE" }));
});

let typing = null;
view.addEventListener("input", e => {
  if (e.target.id !== "filter") return;
  clearTimeout(typing);
  typing = setTimeout(() => {
    setParams({ q: e.target.value.trim() });
    rerender();
  }, 150);
});

view.addEventListener("change", e => {
  const t = e.target;
  if (t.id === "problems") {
    setParams({ problems: t.checked });
    rerender();
  } else if (t.id === "sort") {
    setParams({ sort: t.value === "state" ? "" : t.value, rev: false });
    rerender();
  } else if (t.closest(".filters")) {
    setParams({ [t.name]: t.value, ...(t.name === "server" ? { service: "" } : {}) });
    refresh();
  }
});

view.addEventListener("submit", e => {
  if (e.target.id !== "silence-form") return;
  e.preventDefault();
  const f = new FormData(e.target);
  const body = { server: f.get("server"), duration: Number(f.get("duration")), comment: f.get("comment") };
  if (f.get("service")) body.service = f.get("service");
  act(() => api("/ui/api/silences", { method: "POST", body: JSON.stringify(body) }), () => e.target.reset());
});

document.querySelector(".skip").addEventListener("click", e => {
  e.preventDefault();
  view.focus();
});

document.getElementById("test-alert").addEventListener("click", () => act(testAlert));

window.addEventListener("hashchange", () => {
  mounted = "";
  lastHtml.delete(view);
  view.innerHTML = '<p class="muted">Loading…</p>';
  refresh();
});

api("/ui/api/info").then(i => {
  info = i;
  document.getElementById("test-alert").hidden = !i.actions;
}).catch(() => {}).finally(refresh);
