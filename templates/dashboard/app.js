// hatchery fleet dashboard: everything is built with textContent and canvas drawing only;
// bus data is never parsed as HTML. The server judges every agent (its row's state is the
// verdict of hatchery's one rule, sent again when the clock alone changes it) and keeps the
// last hour (/history); the page sorts, filters, groups, and draws. This module is the table
// and the wiring; the last hour is lasthour.js (drawn by charts.js), the words format.js.
// A module script: strict, deferred, and nothing of it lands on window.
import { STATES, ago, cpu, memory, since, text, uptime } from "./format.js";
import { lastHour } from "./lasthour.js";

// worst first: offline, then stale and the other problems, then alerting, then the rest
const RANK = { offline: 0, missing: 1, unhealthy: 2, unknown: 3, stale: 4, online: 6, stopped: 7 };
const ALERTING_RANK = 5;
const ALERT_RECENT = 900;   // seconds an alert makes its agent "alerting"
const COLUMNS = ["agent", "state", "since", "age", "uptime", "mem", "cpu", "spark", "version",
                 "rtt", "errors", "alerts", "last_alert", "alert_at", "invalid", "groups", "host"];
const NUMERIC = new Set(["age", "uptime", "mem", "cpu", "rtt", "errors", "alerts", "invalid"]);
const TEXT_SORTS = new Set(["agent", "version", "last_alert", "groups", "host"]);
const NAMES = { agent: "agent", state: "worst first", since: "since", age: "heartbeat age",
                uptime: "uptime", mem: "memory", cpu: "cpu", version: "version", rtt: "round trip",
                errors: "errors", alerts: "alerts", last_alert: "last alert",
                alert_at: "alert at", invalid: "invalid", groups: "groups", host: "host" };
const agents = new Map();     // name -> {data, tr, cells, canvas}
const heads = new Map();      // host -> its header row when grouping by host
let offset = 0, sortKey = "state", sortDir = 1, orderDirty = true;
// Rows on screen: the clock's repaint (ages, "since") and the sparklines touch only these,
// so a thousand-row table is not laid out again every second. A row scrolled into view
// is painted then; a row whose data changes is painted at once wherever it is.
const onScreen = new Set();
const hour = lastHour(agents, onScreen);
const watcher = "IntersectionObserver" in window ? new IntersectionObserver((seen) => {
  const t = now();
  for (const e of seen) {
    const entry = agents.get(e.target.dataset.agent);
    if (!entry) continue;
    if (e.isIntersecting) {
      onScreen.add(entry);
      paint(entry, t);
      if (entry.sparkStale) hour.drawSparkOf(entry);
    } else onScreen.delete(entry);
  }
}, { rootMargin: "200px" }) : null;
const $ = (id) => document.getElementById(id);

function now() { return Date.now() / 1000 + offset; }
function set(node, value) { if (node.textContent !== value) node.textContent = value; }
function alerting(d, t) { return !!d.last_alert_at && t - d.last_alert_at < ALERT_RECENT; }

// --- rows -------------------------------------------------------------------------------

function makeRow(name) {
  const tr = document.createElement("tr");
  tr.dataset.agent = name;
  const cells = {};
  for (const col of COLUMNS) {
    const td = document.createElement("td");
    td.className = col + (NUMERIC.has(col) ? " num" : "");
    cells[col] = td;
    tr.appendChild(td);
  }
  const label = document.createElement("span");
  label.className = "name";
  cells.agent.appendChild(label);
  const entry = { tr, cells, label, link: null, canvas: null, data: null, sparkStale: false };
  if (watcher) watcher.observe(tr); else onScreen.add(entry);
  return entry;
}

function logLink(entry, name) {
  if (entry.link) return;
  const a = document.createElement("a");
  a.className = "logs";
  a.href = "/logs?agent=" + encodeURIComponent(name);
  a.textContent = "log";
  a.addEventListener("click", (e) => { e.preventDefault(); showLogs(name); });
  entry.cells.agent.appendChild(a);
  entry.link = a;
}

function paint(entry, t) {
  const d = entry.data, c = entry.cells, state = d.state;
  if (entry.tr.dataset.state !== state) {
    entry.tr.dataset.state = state;
    entry.tr.dataset.seen = String(Date.now());   // when this page saw the change
    orderDirty = true;
  }
  const hot = alerting(d, t) ? "yes" : "no";
  if (entry.tr.dataset.alerting !== hot) { entry.tr.dataset.alerting = hot; orderDirty = true; }
  set(entry.label, d.in_inventory ? text(d.agent) : text(d.agent) + " (not in inventory)");
  if (d.in_inventory) logLink(entry, d.agent);
  set(c.state, state);
  set(c.since, since(d.since, d.since_exact, t));
  set(c.age, d.beat_ts === null || d.beat_ts === undefined ? "-" : ago(t - d.beat_ts));
  set(c.uptime, uptime(d.uptime));
  set(c.mem, memory(d.mem_kb));
  set(c.cpu, cpu(d.cpu));
  set(c.version, text(d.version));
  set(c.rtt, d.rtt_ms === null || d.rtt_ms === undefined ? "-" : d.rtt_ms.toFixed(1) + " ms");
  set(c.errors, text(d.errors));
  set(c.alerts, text(d.alerts));
  set(c.last_alert, text(d.last_alert));
  set(c.alert_at, d.last_alert_at ? since(d.last_alert_at, true, t) : "-");
  set(c.invalid, text(d.invalid));
  set(c.groups, (d.groups || []).map(String).join(", "));
  set(c.host, text(d.host));
}

// --- sorting, filtering, grouping -------------------------------------------------------

function rank(d, t) {
  const r = d.state in RANK ? RANK[d.state] : 3;
  return r >= ALERTING_RANK && d.state === "online" && alerting(d, t) ? ALERTING_RANK : r;
}

function key(d, col, t) {
  switch (col) {
    case "state": return rank(d, t);
    case "since": return d.since;
    case "age": return d.beat_ts === null || d.beat_ts === undefined ? null : t - d.beat_ts;
    case "mem": return d.mem_kb;
    case "rtt": return d.rtt_ms;
    case "alert_at": return d.last_alert_at;
    case "groups": return (d.groups || []).join(",");
    default: return d[col];
  }
}

function compare(a, b, t) {
  const x = key(a, sortKey, t), y = key(b, sortKey, t);
  const xNull = x === null || x === undefined, yNull = y === null || y === undefined;
  if (xNull !== yNull) return xNull ? 1 : -1;       // the unknown last, either way
  if (!xNull && x !== y) {
    const order = typeof x === "string" ? x.localeCompare(y) : (x < y ? -1 : 1);
    return order * sortDir;
  }
  return a.agent < b.agent ? -1 : a.agent > b.agent ? 1 : 0;
}

function kept(d) {
  const g = $("f-group").value, h = $("f-host").value, s = $("f-state").value;
  return (!g || (d.groups || []).includes(g)) && (!h || d.host === h) && (!s || d.state === s);
}

function hostHead(host, members, t) {
  let tr = heads.get(host);
  if (!tr) {
    tr = document.createElement("tr");
    tr.className = "host-head";
    tr.dataset.host = host;
    const td = document.createElement("td");
    td.colSpan = COLUMNS.length;
    tr.appendChild(td);
    heads.set(host, tr);
  }
  const down = members.filter((d) => rank(d, t) < ALERTING_RANK).length;
  set(tr.firstChild, host + " · " + members.length + " agent" + (members.length === 1 ? "" : "s") +
      (down ? " · " + down + " with a problem" : ""));
  return tr;
}

function order(t) {
  const shown = [];
  for (const entry of agents.values()) {
    const keep = kept(entry.data);
    entry.tr.hidden = !keep;
    if (keep) shown.push(entry.data);
  }
  shown.sort((a, b) => compare(a, b, t));
  let rows = shown.map((d) => agents.get(d.agent).tr);
  if ($("by-host").checked) {
    const groups = new Map();
    for (const d of shown) {
      if (!groups.has(d.host)) groups.set(d.host, []);
      groups.get(d.host).push(d);
    }
    const hosts = [...groups.keys()].sort((a, b) => {
      const worst = (h) => Math.min(...groups.get(h).map((d) => rank(d, t)));
      return worst(a) - worst(b) || (a < b ? -1 : a > b ? 1 : 0);
    });
    rows = [];
    for (const host of hosts) {
      rows.push(hostHead(host, groups.get(host), t));
      for (const d of groups.get(host)) rows.push(agents.get(d.agent).tr);
    }
  }
  const body = $("rows"), current = body.children;
  let same = current.length === rows.length;
  for (let i = 0; same && i < rows.length; i++) same = current[i] === rows[i];
  if (!same) {
    const fragment = document.createDocumentFragment();
    for (const tr of rows) fragment.appendChild(tr);
    body.replaceChildren(fragment);      // one insertion; hidden rows leave the table
  }
  set($("sorted"), "sorted: " + NAMES[sortKey] + (sortKey === "state" ? "" : sortDir > 0 ? " ▲" : " ▼"));
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort !== sortKey ? "none" :
                    sortDir > 0 ? "ascending" : "descending");
  }
  return shown.length;
}

function sortBy(col) {
  if (col === sortKey) sortDir = -sortDir;
  else { sortKey = col; sortDir = NUMERIC.has(col) ? -1 : 1; }
  if (col === "state") sortDir = 1;       // worst first is the one order of states
  orderDirty = true;
  redraw();
}

function totals(t) {
  const sum = { agents: 0, errors: 0, alerts: 0, invalid: 0, alerting: 0 };
  for (const state of STATES) sum[state] = 0;
  for (const entry of agents.values()) {
    const d = entry.data;
    sum.agents += 1;
    if (d.state in sum) sum[d.state] += 1;
    sum.errors += d.errors || 0;
    sum.alerts += d.alerts || 0;
    sum.invalid += d.invalid || 0;
    if (alerting(d, t)) sum.alerting += 1;
  }
  for (const k of Object.keys(sum)) set($("t-" + k), String(sum[k]));
  return sum.agents;
}

function redraw() {
  const t = now(), all = totals(t);
  if (orderDirty) {
    set($("shown"), order(t) + " of " + all + " shown");
    orderDirty = false;
  }
}

function addOption(select, value) {
  for (const o of select.options) if (o.value === value) return;
  const option = document.createElement("option");
  option.value = value;
  option.textContent = value;
  select.appendChild(option);
}

function drop(name) {
  const entry = agents.get(name);
  if (entry) {
    if (watcher) watcher.unobserve(entry.tr);
    onScreen.delete(entry);
    entry.tr.remove(); agents.delete(name); hour.forget(name); orderDirty = true;
  }
}

function apply(event) {
  offset = event.now - Date.now() / 1000;
  set($("title"), text(event.title));
  const t = now();
  if (event.full) {                         // after a reconnect: whoever is not listed is gone
    const listed = new Set(event.rows.map((d) => d.agent));
    for (const name of [...agents.keys()]) if (!listed.has(name)) drop(name);
  }
  let news = event.full;      // a change the timeline has an event for: fetch it soon
  for (const d of event.rows) {
    let entry = agents.get(d.agent);
    if (d.state === "retired") { drop(d.agent); news = true; continue; }   // agent.retire: off for good
    if (!entry) { entry = makeRow(d.agent); agents.set(d.agent, entry); }
    const was = entry.data;
    if (was && (was.state !== d.state || was.intent !== d.intent || was.last_alert_at !== d.last_alert_at)) news = true;
    entry.data = d;
    for (const g of d.groups || []) addOption($("f-group"), String(g));
    addOption($("f-host"), String(d.host));
    paint(entry, t);
  }
  orderDirty = true;
  redraw();
  document.body.dataset.version = String(event.version);
  if (news) hour.scheduleHistory(300);
}

function tick() {
  const started = performance.now(), t = now();
  for (const entry of onScreen) paint(entry, t);
  if (["age", "since", "alert_at"].includes(sortKey)) orderDirty = true;
  redraw();
  document.body.dataset.tickMs = (performance.now() - started).toFixed(1);
  document.body.dataset.onScreen = String(onScreen.size);
}

// --- logs ------------------------------------------------------------------------------

function showLogs(name) {
  $("logs-box").hidden = false;
  set($("logs-agent"), name);
  set($("logs"), "reading…");
  fetch("/logs?agent=" + encodeURIComponent(name), { credentials: "same-origin", cache: "no-store" })
    .then((r) => r.text().then((body) => ({ ok: r.ok, body })))
    .then(({ ok, body }) => { $("logs").dataset.ok = ok ? "yes" : "no"; set($("logs"), body || "(empty)"); })
    .catch(() => set($("logs"), "could not read the log"));
}

// --- wiring -----------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/events");
  source.onopen = () => { $("link").dataset.state = "live"; set($("link"), "live"); };
  source.onerror = () => { $("link").dataset.state = "lost";
                           set($("link"), "connection lost, retrying…"); };
  source.onmessage = (message) => apply(JSON.parse(message.data));
}

document.addEventListener("DOMContentLoaded", () => {
  hour.measureFleet();
  window.addEventListener("resize", () => { hour.measureFleet(); hour.redrawFleet(); });
  for (const id of ["f-group", "f-host", "f-state", "by-host"]) {
    $(id).addEventListener("change", () => { orderDirty = true; redraw(); });
  }
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => sortBy(th.dataset.sort));
  }
  $("logs-close").addEventListener("click", () => { $("logs-box").hidden = true; });
  connect();
  setInterval(tick, 1000);
  setInterval(() => hour.scheduleHistory(0), 10000);
});
