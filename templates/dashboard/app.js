// hatchery fleet dashboard: rows built with textContent only; bus data is never parsed as HTML.
// The server judges every agent (its row's state is the verdict of hatchery's one rule, sent
// again when the clock alone changes it); the page only counts, filters and shows the age.
"use strict";
(function () {
  const STATES = ["online", "unhealthy", "stale", "offline", "missing", "unknown", "stopped"];
  const agents = new Map();   // name -> {data, tr, cells}
  let offset = 0;             // server clock minus ours, seconds
  const $ = (id) => document.getElementById(id);
  const COLUMNS = ["agent", "state", "age", "version", "rtt", "errors", "alerts",
                   "last_alert", "invalid", "groups", "host"];
  const NUMERIC = new Set(["age", "rtt", "errors", "alerts", "invalid"]);

  function now() { return Date.now() / 1000 + offset; }

  function text(value) { return value === null || value === undefined ? "-" : String(value); }

  function age(d, t) {
    if (d.beat_ts === null || d.beat_ts === undefined) return "-";
    const s = Math.max(0, t - d.beat_ts);
    if (s < 120) return s.toFixed(1) + " s";
    if (s < 7200) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function makeRow(name, into) {
    const tr = document.createElement("tr");
    tr.dataset.agent = name;
    const cells = {};
    for (const col of COLUMNS) {
      const td = document.createElement("td");
      td.className = col + (NUMERIC.has(col) ? " num" : "");
      cells[col] = td;
      tr.appendChild(td);
    }
    into.appendChild(tr);
    return { tr, cells, data: null };
  }

  function set(td, value) { if (td.textContent !== value) td.textContent = value; }

  function paint(entry, t) {
    const d = entry.data, c = entry.cells, state = d.state;
    if (entry.tr.dataset.state !== state) {
      entry.tr.dataset.state = state;
      entry.tr.dataset.since = String(Date.now());   // when this page saw the change
    }
    set(c.agent, d.in_inventory ? text(d.agent) : text(d.agent) + " (not in inventory)");
    set(c.state, state);
    set(c.age, age(d, t));
    set(c.version, text(d.version));
    set(c.rtt, d.rtt_ms === null ? "-" : d.rtt_ms.toFixed(1) + " ms");
    set(c.errors, text(d.errors));
    set(c.alerts, text(d.alerts));
    set(c.last_alert, text(d.last_alert));
    set(c.invalid, text(d.invalid));
    set(c.groups, (d.groups || []).map(String).join(", "));
    set(c.host, text(d.host));
  }

  function addOption(select, value) {
    for (const o of select.options) if (o.value === value) return;
    const option = document.createElement("option");
    option.value = value;
    option.textContent = value;
    select.appendChild(option);
  }

  function filter(entry, t) {
    const g = $("f-group").value, h = $("f-host").value, s = $("f-state").value;
    const d = entry.data;
    const keep = (!g || (d.groups || []).includes(g)) && (!h || d.host === h) &&
                 (!s || d.state === s);
    entry.tr.hidden = !keep;
    return keep;
  }

  function totals(t) {
    const sum = { agents: 0, errors: 0, alerts: 0, invalid: 0 };
    for (const state of STATES) sum[state] = 0;
    let shown = 0;
    for (const entry of agents.values()) {
      const d = entry.data;
      sum.agents += 1;
      if (d.state in sum) sum[d.state] += 1;
      sum.errors += d.errors || 0;
      sum.alerts += d.alerts || 0;
      sum.invalid += d.invalid || 0;
      if (filter(entry, t)) shown += 1;
    }
    for (const key of Object.keys(sum)) set($("t-" + key), String(sum[key]));
    set($("shown"), shown + " of " + sum.agents + " shown");
  }

  function drop(name) {
    const entry = agents.get(name);
    if (entry) { entry.tr.remove(); agents.delete(name); }
  }

  function apply(event) {
    offset = event.now - Date.now() / 1000;
    set($("title"), text(event.title));
    const t = now(), added = document.createDocumentFragment();
    if (event.full) {                         // after a reconnect: whoever is not listed is gone
      const listed = new Set(event.rows.map((d) => d.agent));
      for (const name of [...agents.keys()]) if (!listed.has(name)) drop(name);
    }
    for (const d of event.rows) {
      let entry = agents.get(d.agent);
      if (d.state === "retired") { drop(d.agent); continue; }   // agent.retire: off for good
      if (!entry) { entry = makeRow(d.agent, added); agents.set(d.agent, entry); }
      entry.data = d;
      for (const g of d.groups || []) addOption($("f-group"), String(g));
      addOption($("f-host"), String(d.host));
      paint(entry, t);
    }
    $("rows").appendChild(added);   // one insertion for a thousand new rows
    totals(t);
    document.body.dataset.version = String(event.version);
  }

  function tick() {
    const t = now();
    for (const entry of agents.values()) paint(entry, t);
    totals(t);
  }

  function connect() {
    const source = new EventSource("/events");
    source.onopen = () => { $("link").dataset.state = "live"; set($("link"), "live"); };
    source.onerror = () => { $("link").dataset.state = "lost";
                             set($("link"), "connection lost, retrying…"); };
    source.onmessage = (message) => apply(JSON.parse(message.data));
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const id of ["f-group", "f-host", "f-state"]) $(id).addEventListener("change", () => totals(now()));
    connect();
    setInterval(tick, 1000);
  });
})();
