// hatchery fleet dashboard: everything is built with textContent and canvas drawing only;
// bus data is never parsed as HTML. The server judges every agent (its row's state is the
// verdict of hatchery's one rule, sent again when the clock alone changes it) and keeps the
// last hour (/history); the page sorts, filters, groups, and draws.
"use strict";
(function () {
  const STATES = ["online", "unhealthy", "stale", "offline", "missing", "unknown", "stopped"];
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
  const EVENTS_SHOWN = 200;
  const SPARK_W = 110, SPARK_H = 22;   // td.spark canvas in app.css
  const fleetSize = { w: 900, h: 110 };  // the fleet chart's CSS size, read before the table and on resize
  const MIN_SPAN = 180;         // seconds: a young history is drawn over three minutes, not an hour
  const agents = new Map();     // name -> {data, tr, cells, canvas}
  const heads = new Map();      // host -> its header row when grouping by host
  const spark = { first: null, last: null, step: 20, slots: 180, byAgent: new Map(),
                  firstData: null, trimmed: null };
  const fleet = { first: null, last: null, step: 10, slots: 360, counts: new Map() };
  let seq = 0, offset = 0, sortKey = "state", sortDir = 1, orderDirty = true;
  let historyTimer = null, historyBusy = false;
  // Rows on screen: the clock's repaint (ages, "since") and the sparklines touch only these,
  // so a thousand-row table is not laid out again every second. A row scrolled into view
  // is painted then; a row whose data changes is painted at once wherever it is.
  const onScreen = new Set();
  const watcher = "IntersectionObserver" in window ? new IntersectionObserver((seen) => {
    const t = now();
    for (const e of seen) {
      const entry = agents.get(e.target.dataset.agent);
      if (!entry) continue;
      if (e.isIntersecting) {
        onScreen.add(entry);
        paint(entry, t);
        if (entry.sparkStale) drawSpark(entry, spark.byAgent.get(entry.tr.dataset.agent) || new Map(), firstSpark());
      } else onScreen.delete(entry);
    }
  }, { rootMargin: "200px" }) : null;
  const $ = (id) => document.getElementById(id);

  function now() { return Date.now() / 1000 + offset; }
  function text(value) { return value === null || value === undefined ? "-" : String(value); }
  function set(node, value) { if (node.textContent !== value) node.textContent = value; }

  function ago(seconds) {
    const s = Math.max(0, seconds);
    if (s < 120) return s.toFixed(s < 10 ? 1 : 0) + " s";
    if (s < 7200) return (s / 60).toFixed(s < 600 ? 1 : 0) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  function clock(ts) {
    const d = new Date(ts * 1000), pad = (n) => String(n).padStart(2, "0");
    const hms = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    return Date.now() - d.getTime() > 86400000 ? d.toISOString().slice(0, 10) + " " + hms : hms;
  }

  function since(ts, exact, t) {
    if (ts === null || ts === undefined) return "-";
    return (exact === false ? "≤ " : "") + clock(ts) + " (" + ago(t - ts) + ")";
  }

  function uptime(s) {
    if (s === null || s === undefined) return "-";
    if (s < 60) return Math.floor(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function memory(kb) { return kb === null || kb === undefined ? "-" : (kb / 1024).toFixed(1) + " MB"; }
  function cpu(share) { return share === null || share === undefined ? "-" : (share * 100).toFixed(1) + " %"; }
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
      entry.tr.remove(); agents.delete(name); spark.byAgent.delete(name); orderDirty = true;
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
    if (news) scheduleHistory(300);
  }

  function tick() {
    const started = performance.now(), t = now();
    for (const entry of onScreen) paint(entry, t);
    if (["age", "since", "alert_at"].includes(sortKey)) orderDirty = true;
    redraw();
    document.body.dataset.tickMs = (performance.now() - started).toFixed(1);
    document.body.dataset.onScreen = String(onScreen.size);
  }

  // --- the last hour: sparklines, the fleet chart, the timeline --------------------------

  function scheduleHistory(delay) {
    if (historyTimer === null) historyTimer = setTimeout(fetchHistory, delay);
  }

  function fetchHistory() {
    historyTimer = null;
    if (historyBusy) { scheduleHistory(500); return; }
    historyBusy = true;
    const query = spark.last === null ? "" :
      "?spark=" + spark.last + "&fleet=" + fleet.last + "&after=" + seq;
    fetch("/history" + query, { credentials: "same-origin", cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then(mergeHistory)
      .catch(() => {})
      .finally(() => { historyBusy = false; });
  }

  function window_(store, last) {   // keep the last hour of slots, whatever arrived
    store.last = store.last === null ? last : Math.max(store.last, last);
    store.first = store.last - store.slots + 1;
  }

  function mergeHistory(h) {
    const started = performance.now(), s = h.sparks;
    spark.step = s.step;
    window_(spark, s.last);
    const moved = spark.trimmed !== spark.first;   // the hour's window slid: drop what left it
    spark.trimmed = spark.first;
    for (const [name, series] of Object.entries(s.agents)) {
      let slots = spark.byAgent.get(name);
      if (!slots) { slots = new Map(); spark.byAgent.set(name, slots); }
      const mem = series.mem_kb, cpus = series.cpu, rtt = series.rtt_ms;
      for (let i = 0; i < mem.length; i++) {
        if (mem[i] !== null || cpus[i] !== null || rtt[i] !== null) {
          slots.set(s.first + i, [mem[i], cpus[i], rtt[i]]);
          if (spark.firstData === null || s.first + i < spark.firstData) spark.firstData = s.first + i;
        } else slots.delete(s.first + i);
      }
      if (moved) for (const slot of slots.keys()) if (slot < spark.first) slots.delete(slot);
    }
    if (spark.firstData !== null && spark.firstData < spark.first) spark.firstData = spark.first;
    spark.ms = (performance.now() - started).toFixed(1);
    drawSparks();
    const f = h.fleet;
    fleet.step = f.step;
    window_(fleet, f.last);
    for (let i = 0; i <= f.last - f.first; i++) {
      const v = {};
      for (const state of STATES) v[state] = f.counts[state][i];
      if (v.online !== null) fleet.counts.set(f.first + i, v);
    }
    for (const slot of fleet.counts.keys()) if (slot < fleet.first) fleet.counts.delete(slot);
    drawFleet();
    const drawn = performance.now();
    addEvents(h.events);
    seq = Math.max(seq, h.seq);
    document.body.dataset.historyMs = (performance.now() - started).toFixed(1);
    document.body.dataset.historyParts = [spark.ms, (drawn - started).toFixed(1)].join("/");
  }

  // A canvas's drawing context at the device's pixel ratio. ``w``, ``h``: its CSS size; a
  // sparkline passes the size app.css gives it, since asking the layout (clientWidth) of a
  // canvas in a thousand-row table after another was resized would lay the table out again.
  function scaled(canvas, w, h) {
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  // one series, scaled on its own: "area" (memory), "line" (cpu) or "dots" (rtt)
  function line(ctx, points, color, w, h, how) {
    const values = points.filter((p) => p[1] !== null).map((p) => p[1]);
    if (!values.length) return;
    // scaled from a little under its lowest to a little over its highest: a change shows,
    // a steady value draws a steady line at four fifths of the height
    const lo = 0.8 * Math.min(...values), hi = 1.05 * Math.max(...values);
    const y = (v) => h - 1 - (hi > lo ? (v - lo) / (hi - lo) : 0.8) * (h - 3);
    ctx.strokeStyle = ctx.fillStyle = color;
    ctx.lineWidth = 1.2;
    if (how === "dots") {
      for (const [x, v] of points) if (v !== null) ctx.fillRect(x * w - 1, y(v) - 1, 2, 2);
      return;
    }
    let run = [];
    const flush = () => {
      if (run.length === 1) { ctx.fillRect(run[0][0] * w - 1, y(run[0][1]) - 1, 2, 2); run = []; return; }
      if (!run.length) return;
      ctx.beginPath();
      ctx.moveTo(run[0][0] * w, y(run[0][1]));
      for (const [x, v] of run) ctx.lineTo(x * w, y(v));
      if (how === "area") {
        ctx.lineTo(run[run.length - 1][0] * w, h);
        ctx.lineTo(run[0][0] * w, h);
        ctx.closePath();
        ctx.fill();
      } else ctx.stroke();
      run = [];
    };
    for (const p of points) { if (p[1] === null) flush(); else run.push(p); }
    flush();
  }

  // the slots drawn: from the first with data (at least MIN_SPAN back) to the last
  function span(store, firstWithData) {
    const least = Math.ceil(MIN_SPAN / store.step);
    const from = Math.max(store.first, Math.min(firstWithData, store.last - least + 1));
    return { from, count: store.last - from + 1 };
  }

  function firstSpark() { return spark.firstData === null ? spark.last : spark.firstData; }

  function drawSparks() {
    const first = firstSpark();
    for (const [name, slots] of spark.byAgent) {
      const entry = agents.get(name);
      if (!entry) continue;
      if (onScreen.has(entry)) drawSpark(entry, slots, first);
      else entry.sparkStale = true;        // drawn when it scrolls into view
    }
  }

  function drawSpark(entry, slots, firstWithData) {
    entry.sparkStale = false;
    if (!entry.canvas) {
      entry.canvas = document.createElement("canvas");
      entry.cells.spark.appendChild(entry.canvas);
    }
    const canvas = entry.canvas, { ctx, w, h } = scaled(canvas, SPARK_W, SPARK_H);
    const series = [[], [], []], { from, count } = span(spark, firstWithData);
    let latest = null;
    for (let slot = from; slot <= spark.last; slot++) {
      const v = slots.get(slot) || [null, null, null], x = (slot - from + 0.5) / count;
      for (let k = 0; k < 3; k++) series[k].push([x, v[k]]);
      if (slots.has(slot)) latest = v;
    }
    line(ctx, series[0], "#c9d8ee", w, h, "area");     // memory
    line(ctx, series[1], "#d08a00", w, h, "line");     // cpu
    line(ctx, series[2], "#333", w, h, "dots");        // round trip
    canvas.dataset.points = String(slots.size);
    canvas.title = latest === null ? "" : "last hour · memory " + memory(latest[0]) + " · cpu " +
      cpu(latest[1]) + " · round trip " + (latest[2] === null ? "-" : latest[2] + " ms");
  }

  function drawFleet() {
    const canvas = $("fleet-chart"), { ctx, w, h } = scaled(canvas, fleetSize.w, fleetSize.h);
    if (fleet.last === null) return;
    let top = 1, firstWithData = fleet.last;
    for (const [slot, v] of fleet.counts) {
      top = Math.max(top, v.online + v.unhealthy + v.stale + v.offline + v.missing + v.unknown + v.stopped);
      firstWithData = Math.min(firstWithData, slot);
    }
    const { from, count } = span(fleet, firstWithData), minutes = Math.round(count * fleet.step / 60);
    ctx.fillStyle = "#888";
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillText(String(top), 2, 10);
    ctx.fillText("0", 2, h - 2);
    ctx.fillText(minutes >= 60 ? "-1 h" : "-" + minutes + " min", 24, h - 2);
    ctx.fillText("now", w - 22, h - 2);
    const plot = { x: 24, w: w - 50 };
    for (const [state, color] of [["online", "#2a7d2a"], ["stale", "#d08a00"], ["offline", "#b00020"]]) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let drawing = false;
      for (let slot = from; slot <= fleet.last; slot++) {
        const v = fleet.counts.get(slot);
        if (!v) { drawing = false; continue; }
        const x = plot.x + ((slot - from) / Math.max(1, count - 1)) * plot.w;
        const y = h - 12 - (v[state] / top) * (h - 22);
        if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        drawing = true;
      }
      ctx.stroke();
    }
    canvas.dataset.slots = String(fleet.counts.size);
    const last = fleet.counts.get(fleet.last) || fleet.counts.get(fleet.last - 1);
    canvas.title = last ? "now: " + last.online + " online, " + last.stale + " stale, " +
      last.offline + " offline" : "";
  }

  function addEvents(events) {
    const list = $("timeline");
    for (const e of events) {
      const li = document.createElement("li");
      li.dataset.kind = e.kind;
      li.dataset.seq = String(e.seq);
      if (e.kind === "state" || e.kind === "retired") li.dataset.to = String(e.text).split(" → ").pop();
      const time = document.createElement("time");
      time.textContent = clock(e.at);
      li.appendChild(time);
      if (e.agent) {
        const who = document.createElement("b");
        who.textContent = String(e.agent);
        li.appendChild(who);
      }
      const said = e.kind === "alert" || e.kind === "heal" ? e.kind + " " + e.text : e.text;
      li.appendChild(document.createTextNode(String(said)));
      list.insertBefore(li, list.firstChild);     // newest first
    }
    while (list.children.length > EVENTS_SHOWN) list.lastChild.remove();
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

  function measureFleet() {
    const box = $("fleet-chart");
    fleetSize.w = box.clientWidth || fleetSize.w;
    fleetSize.h = box.clientHeight || fleetSize.h;
  }

  document.addEventListener("DOMContentLoaded", () => {
    measureFleet();
    window.addEventListener("resize", () => { measureFleet(); drawFleet(); });
    for (const id of ["f-group", "f-host", "f-state", "by-host"]) {
      $(id).addEventListener("change", () => { orderDirty = true; redraw(); });
    }
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.addEventListener("click", () => sortBy(th.dataset.sort));
    }
    $("logs-close").addEventListener("click", () => { $("logs-box").hidden = true; });
    connect();
    setInterval(tick, 1000);
    setInterval(() => scheduleHistory(0), 10000);
  });
})();
