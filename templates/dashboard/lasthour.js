// The last hour, read from the server's /history: every agent's sparkline slots, the fleet's
// verdict counts, and the event timeline. Fetched in increments (only what is newer than what
// the page holds), kept to the hour's window, drawn by charts.js into the rows of app.js.
import { drawFleet, drawSpark } from "./charts.js";
import { STATES, clock } from "./format.js";

const EVENTS_SHOWN = 200;

// ``agents``: name -> row entry (app.js); ``onScreen``: the entries scrolled into view. Only
// those are drawn at once; the others are marked and drawn when they scroll in (drawSparkOf).
export function lastHour(agents, onScreen) {
  const spark = { first: null, last: null, step: 20, slots: 180, byAgent: new Map(),
                  firstData: null, trimmed: null };
  const fleet = { first: null, last: null, step: 10, slots: 360, counts: new Map() };
  const fleetSize = { w: 900, h: 110 };  // the fleet chart's CSS size, read before the table and on resize
  let seq = 0, historyTimer = null, historyBusy = false;

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
    redrawFleet();
    const drawn = performance.now();
    addEvents(h.events);
    seq = Math.max(seq, h.seq);
    document.body.dataset.historyMs = (performance.now() - started).toFixed(1);
    document.body.dataset.historyParts = [spark.ms, (drawn - started).toFixed(1)].join("/");
  }

  function firstSpark() { return spark.firstData === null ? spark.last : spark.firstData; }

  function drawSparks() {
    const first = firstSpark();
    for (const [name, slots] of spark.byAgent) {
      const entry = agents.get(name);
      if (!entry) continue;
      if (onScreen.has(entry)) drawSpark(entry, slots, spark, first);
      else entry.sparkStale = true;        // drawn when it scrolls into view
    }
  }

  function drawSparkOf(entry) {
    drawSpark(entry, spark.byAgent.get(entry.tr.dataset.agent) || new Map(), spark, firstSpark());
  }

  function forget(name) { spark.byAgent.delete(name); }

  function measureFleet() {
    const box = document.getElementById("fleet-chart");
    fleetSize.w = box.clientWidth || fleetSize.w;
    fleetSize.h = box.clientHeight || fleetSize.h;
  }

  function redrawFleet() { drawFleet(document.getElementById("fleet-chart"), fleet, fleetSize); }

  function addEvents(events) {
    const list = document.getElementById("timeline");
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

  return { scheduleHistory, drawSparkOf, forget, measureFleet, redrawFleet };
}
