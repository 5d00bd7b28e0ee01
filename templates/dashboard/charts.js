// Canvas drawing of the last hour: a row's sparkline and the fleet chart. Drawing only: the
// slots come from lasthour.js (a store: {first, last, step, ...}), the canvases from the page.
import { cpu, memory } from "./format.js";

const SPARK_W = 110, SPARK_H = 22;   // td.spark canvas in app.css
const MIN_SPAN = 180;         // seconds: a young history is drawn over three minutes, not an hour

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

// ``entry``: a table row ({cells, canvas, sparkStale}); ``slots``: its agent's slot -> values
export function drawSpark(entry, slots, spark, firstWithData) {
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

// ``size``: the chart's CSS size, measured by the caller (before the table and on resize)
export function drawFleet(canvas, fleet, size) {
  const { ctx, w, h } = scaled(canvas, size.w, size.h);
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
