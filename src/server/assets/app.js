// overc web page: plain JavaScript over the /ui/api/ JSON, refreshed in place.
"use strict";

const REFRESH_MS = 5000;
const view = document.getElementById("view");
const banner = document.getElementById("banner");
let info = { actions: false };
let lastStates = new Map(); // service id -> state seen at the previous refresh
let timer = null;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function when(iso) {
  return `<time datetime="${esc(iso)}" title="${esc(iso)}">${esc(ago(iso))}</time>`;
}

function badge(state) {
  return `<span class="badge s-${esc(state || "none")}">${esc(state || "—")}</span>`;
}

function firstLine(s) {
  return String(s ?? "").split("\n")[0];
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
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function showBanner(text) {
  banner.hidden = !text;
  banner.textContent = text || "";
}

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [page, id] = h.split("/");
  return { page: page || "overview", id };
}

function services(status) {
  const out = [];
  for (const srv of status.servers) for (const svc of srv.services) out.push({ srv, svc });
  return out;
}

// --- pages ---------------------------------------------------------------

function overview(status) {
  if (!status.servers.length) {
    view.innerHTML = `<h1>Overview</h1><p class="muted">No server has reported yet. Push a status with <code>overcli</code> or <code>curl</code>.</p>`;
    return;
  }
  const cards = status.servers.map(srv => {
    const markers = srv.services.map(svc => {
      const st = svc.state;
      const overdue = st && st.timed_out;
      const title = `${svc.title}: ${st ? st.state : "no state"}${overdue ? " (overdue)" : ""}`;
      return `<a href="#/service/${svc.id}" class="marker ${st ? "s-" + esc(st.state) : ""} ${overdue ? "overdue" : ""}" data-state="${esc(st ? st.state : "")}" title="${esc(title)}">${esc(svc.title)}</a>`;
    }).join("");
    const nOverdue = srv.services.filter(s => s.state && s.state.timed_out).length;
    const acts = info.actions ? `<div class="actions"><button data-rename-server="${srv.id}">Rename</button><button class="danger" data-delete-server="${srv.id}">Delete</button></div>` : "";
    return `<div class="card server" data-server="${esc(srv.name)}">
      <h3>${esc(srv.title)} ${srv.title !== srv.name ? `<span class="muted">${esc(srv.name)}</span>` : ""}</h3>
      <div class="meta">${esc(srv.ip)} · seen ${when(srv.last_seen)} · <span class="count">${serverAlerts(srv)} alerts / 24 h</span>
        ${nOverdue ? ` · <span class="overdue-flag">${nOverdue} overdue</span>` : ""}</div>
      <div class="markers">${markers}</div>${acts}</div>`;
  }).join("");
  view.innerHTML = `<h1>Overview</h1><div class="grid">${cards}</div>`;
}

function serviceRow(srv, svc) {
  const st = svc.state || {};
  return `<td><a href="#/">${esc(srv.title)}</a></td>
    <td><a href="#/service/${svc.id}">${esc(svc.title)}</a></td>
    <td>${badge(st.state)}</td>
    <td class="info">${esc(firstLine(st.info))}</td>
    <td class="hide-narrow">${svc.period ? esc(svc.period) + " s" : "—"}</td>
    <td>${st.rtime ? when(st.rtime) : "never"}</td>
    <td>${st.timed_out ? '<span class="overdue-flag">overdue</span>' : ""}</td>`;
}

function servicesPage(status) {
  let table = view.querySelector("table.services");
  if (!table) {
    view.innerHTML = `<h1>Services</h1><table class="services"><thead><tr><th>Server</th><th>Service</th><th>State</th><th>Info</th>
      <th class="hide-narrow">Period</th><th>Seen</th><th></th></tr></thead><tbody></tbody></table>`;
    table = view.querySelector("table.services");
  }
  const body = table.tBodies[0];
  const old = new Map([...body.rows].map(r => [r.dataset.id, r]));
  let prev = null;
  for (const { srv, svc } of services(status)) {
    const id = String(svc.id);
    let row = old.get(id);
    const html = serviceRow(srv, svc);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.id = id;
    }
    if (row.dataset.html !== html) {
      row.innerHTML = html;
      row.dataset.html = html;
    }
    const state = svc.state ? svc.state.state : "";
    if (lastStates.has(id) && lastStates.get(id) !== state) {
      row.classList.remove("changed");
      void row.offsetWidth; // restart the highlight animation
      row.classList.add("changed");
    }
    row.dataset.state = state;
    old.delete(id);
    if (prev ? prev.nextSibling !== row : body.firstChild !== row) {
      body.insertBefore(row, prev ? prev.nextSibling : body.firstChild);
    }
    prev = row;
  }
  for (const r of old.values()) r.remove();
}

async function servicePage(id) {
  const [one, grouped, states, alerts] = await Promise.all([
    api(`/ui/api/status/service/${id}`),
    api(`/ui/api/status/service/${id}/states?hours=24&groups=yes`),
    api(`/ui/api/status/service/${id}/states?hours=24`),
    api(`/ui/api/status/alerts/service/${id}?hours=24`),
  ]);
  const srv = one.servers[0];
  const svc = srv.services[0];
  const st = svc.state || {};
  const acts = info.actions ? `<div class="actions"><button data-rename-service="${svc.id}">Rename</button><button class="danger" data-delete-service="${svc.id}">Delete</button></div>` : "";
  // A group is known by its lowest id: its highest grows as reports come in.
  const open = new Set([...view.querySelectorAll("tr.group.open")].map(r => r.dataset.id));
  view.innerHTML = `<h1>${esc(srv.title)} / ${esc(svc.title)} ${badge(st.state)} ${st.timed_out ? '<span class="overdue-flag">overdue</span>' : ""}</h1>
    <p class="muted">period ${svc.period ? esc(svc.period) + " s" : "none"} · last report ${st.rtime ? when(st.rtime) : "never"}</p>${acts}
    <h2>Last 24 hours</h2>${timeline(states.states)}
    ${charts(states.states)}
    <h2>History</h2>${historyTable(grouped.states, states.states, open)}
    <h2>Alerts</h2>${alertTable(alerts.alerts, false)}`;
}

function timeline(states) {
  const end = Date.now(), start = end - 24 * 3600e3;
  const asc = [...states].reverse();
  const spans = asc.map((s, i) => {
    const from = Math.max(start, Date.parse(s.rtime));
    const to = i + 1 < asc.length ? Date.parse(asc[i + 1].rtime) : end;
    const left = ((from - start) / (end - start)) * 100, width = Math.max(0.2, ((to - from) / (end - start)) * 100);
    return `<span class="s-${esc(s.state)}" style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%" title="${esc(s.state)} at ${esc(s.rtime)}"></span>`;
  }).join("");
  return `<div class="timeline">${spans}</div><div class="axis"><span>24 h ago</span><span>12 h ago</span><span>now</span></div>`;
}

function charts(states) {
  const series = new Map();
  for (const s of [...states].reverse()) {
    for (const p of s.perfdata || []) {
      if (p.value === null) continue;
      const key = p.label + (p.uom ? ` (${p.uom})` : "");
      if (!series.has(key)) series.set(key, []);
      series.get(key).push([Date.parse(s.rtime), p.value]);
    }
  }
  if (!series.size) return "";
  const out = [...series].map(([label, pts]) => {
    const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y0 = Math.min(...ys), y1 = Math.max(...ys, y0 + 1e-9);
    const poly = pts.map(([x, y]) => `${(((x - x0) / (x1 - x0)) * 100).toFixed(2)},${(30 - ((y - y0) / (y1 - y0)) * 28 - 1).toFixed(2)}`).join(" ");
    return `<div class="card chart" data-label="${esc(label)}"><div class="label">${esc(label)}</div>
      <svg viewBox="0 0 100 30" preserveAspectRatio="none"><polyline points="${poly}"/></svg>
      <div class="axis"><span>min ${esc(+y0.toPrecision(4))}</span><span>last ${esc(ys[ys.length - 1])}</span><span>max ${esc(+y1.toPrecision(4))}</span></div></div>`;
  }).join("");
  return `<h2>Performance data</h2><div class="charts">${out}</div>`;
}

function stateRow(s) {
  const alerts = (s.alerts || []).map(a => `<div class="muted">⚑ ${esc(alertMessage(a))}</div>`).join("");
  return `<tr class="state" data-id="${s.id}"><td>${when(s.rtime)}</td><td>${badge(s.state)}</td><td class="info">${esc(s.info)}${alerts}</td></tr>`;
}

// The history folded by the read API (`groups=yes`, as OverC 1.0.9: each
// run's first and last records shown, the ones between as one group row
// "lowest-highest"); a group unfolds in place from the unfolded history.
function historyTable(grouped, all, open) {
  if (!grouped.length) return `<p class="muted">No reports in the last 24 hours.</p>`;
  const rows = grouped.map(s => {
    if (!s.group) return stateRow(s);
    const [a, b] = s.group.split("-").map(Number);
    const lo = Math.min(a, b), hi = Math.max(a, b);
    const members = all.filter(x => x.id >= lo && x.id <= hi).map(stateRow).join("");
    const isOpen = open.has(String(s.id));
    return `<tr class="group ${isOpen ? "open" : ""}" data-group="${esc(s.group)}" data-id="${esc(s.id)}"><td colspan="3">${s.group_count} × ${esc(s.state)} (folded; click to unfold)</td></tr>` +
      members.replace(/<tr class="state"/g, `<tr class="state member" data-member-of="${esc(s.group)}" ${isOpen ? "" : "hidden"}`);
  }).join("");
  return `<table class="history"><thead><tr><th>Time</th><th>State</th><th>Info</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function alertTable(alerts, withNames) {
  if (!alerts.length) return `<p class="muted">No alerts in the last 24 hours.</p>`;
  const rows = alerts.map(a => `<tr class="alert" data-id="${a.id}"><td>${when(a.ctime)}</td>
    ${withNames ? `<td>${esc(a.server || "overc")}</td><td>${a.service_id ? `<a href="#/service/${a.service_id}">${esc(a.service)}</a>` : ""}</td>` : ""}
    <td>${badge(a.severity)}</td><td class="hide-narrow">${esc(a.channel)}/${esc(a.event)}</td><td class="info">${esc(alertMessage(a))}${alertState(a)}</td></tr>`).join("");
  return `<table class="alerts"><thead><tr><th>Time</th>${withNames ? "<th>Server</th><th>Service</th>" : ""}<th>Severity</th>
    <th class="hide-narrow">Event</th><th>Message</th></tr></thead><tbody>${rows}</tbody></table>`;
}

async function alertsPage(status) {
  const data = await api("/ui/api/status/alerts/?hours=24");
  const f = view.querySelector(".filters");
  const server = f ? f.querySelector("[name=server]").value : "";
  const service = f ? f.querySelector("[name=service]").value : "";
  const servers = status.servers.map(s => s.name);
  const svcNames = [...new Set(services(status).filter(x => !server || x.srv.name === server).map(x => x.svc.name))].sort();
  const opt = (v, sel) => `<option value="${esc(v)}" ${v === sel ? "selected" : ""}>${esc(v)}</option>`;
  const shown = data.alerts.filter(a => (!server || a.server === server) && (!service || a.service === service));
  view.innerHTML = `<h1>Alerts of the last 24 hours</h1>
    <div class="filters"><label>Server <select name="server"><option value="">all</option>${servers.map(s => opt(s, server)).join("")}</select></label>
    <label>Service <select name="service"><option value="">all</option>${svcNames.map(s => opt(s, service)).join("")}</select></label>
    <span class="muted">${shown.length} of ${data.alerts.length}</span></div>${alertTable(shown, true)}`;
}

// --- refresh loop ----------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  const { page, id } = route();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page);
  try {
    const status = await api("/ui/api/status/");
    const lag = status.stats.supervisor_lag;
    showBanner(lag > 60 ? `The supervisor is ${Math.round(lag)} s behind: overdue alerts may be late.` : "");
    if (page === "services") servicesPage(status);
    else if (page === "service" && id) await servicePage(id);
    else if (page === "alerts") await alertsPage(status);
    else overview(status);
    lastStates = new Map(services(status).map(({ svc }) => [String(svc.id), svc.state ? svc.state.state : ""]));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (e) {
    showBanner(`Cannot reach the overc server (${e.message}); retrying…`);
  }
  timer = setTimeout(refresh, REFRESH_MS);
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

view.addEventListener("click", e => {
  const t = e.target.closest("button, tr.group");
  if (!t) return;
  if (t.matches("tr.group")) {
    t.classList.toggle("open");
    for (const r of view.querySelectorAll(`tr[data-member-of="${t.dataset.group}"]`)) r.hidden = !t.classList.contains("open");
    return;
  }
  const d = t.dataset;
  if (d.deleteServer && confirm("Delete this server with all its services, history and alerts?"))
    act(() => api(`/ui/api/item/server/${d.deleteServer}`, { method: "DELETE" }));
  if (d.deleteService && confirm("Delete this service with its history and alerts?"))
    act(() => api(`/ui/api/item/service/${d.deleteService}`, { method: "DELETE" }), () => (location.hash = "#/services"));
  for (const kind of ["server", "service"]) {
    const id = d[kind === "server" ? "renameServer" : "renameService"];
    if (!id) continue;
    const title = prompt(`New title for this ${kind}:`);
    if (title) act(() => api(`/ui/api/item/${kind}/${id}/title`, { method: "POST", body: JSON.stringify({ title }) }));
  }
});

view.addEventListener("change", e => {
  if (e.target.closest(".filters")) refresh();
});

document.getElementById("test-alert").addEventListener("click", () =>
  act(async () => {
    const r = await api("/ui/api/test-alert", { method: "POST", body: "{}" });
    alert(r.plugins.length ? r.plugins.map(p => `${p.plugin}: ${p.ok ? "ok" : "FAILED: " + p.failure}`).join("\n") : "No alert plugins are configured.");
  }));

window.addEventListener("hashchange", () => {
  view.innerHTML = '<p class="muted">Loading…</p>';
  refresh();
});

api("/ui/api/info").then(i => {
  info = i;
  document.getElementById("test-alert").hidden = !i.actions;
}).catch(() => {}).finally(refresh);
