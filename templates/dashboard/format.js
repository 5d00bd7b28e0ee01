// The words and numbers the dashboard shows: the verdicts' names, durations, clock times,
// sizes. Pure functions of their arguments: no page state, no DOM.

export const STATES = ["online", "unhealthy", "stale", "offline", "missing", "unknown", "stopped"];

export function text(value) { return value === null || value === undefined ? "-" : String(value); }

export function ago(seconds) {
  const s = Math.max(0, seconds);
  if (s < 120) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 7200) return (s / 60).toFixed(s < 600 ? 1 : 0) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

export function clock(ts) {
  const d = new Date(ts * 1000), pad = (n) => String(n).padStart(2, "0");
  const hms = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  return Date.now() - d.getTime() > 86400000 ? d.toISOString().slice(0, 10) + " " + hms : hms;
}

export function since(ts, exact, t) {
  if (ts === null || ts === undefined) return "-";
  return (exact === false ? "≤ " : "") + clock(ts) + " (" + ago(t - ts) + ")";
}

export function uptime(s) {
  if (s === null || s === undefined) return "-";
  if (s < 60) return Math.floor(s) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

export function memory(kb) { return kb === null || kb === undefined ? "-" : (kb / 1024).toFixed(1) + " MB"; }
export function cpu(share) { return share === null || share === undefined ? "-" : (share * 100).toFixed(1) + " %"; }
