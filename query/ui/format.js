// How numbers, times and durations read on every page.

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms === 0) return "0 ms";
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  const m = Math.floor(ms / 60000);
  return `${m} min ${((ms % 60000) / 1000).toFixed(0)} s`;
}

export function cost(usd) {
  if (usd === null || usd === undefined) return "–";
  if (usd === 0) return "$0";
  if (Math.abs(usd) < 0.01) return `$${usd.toFixed(5)}`;
  return `$${usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

export function int(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US");
}

export function compact(n) {
  if (n === null || n === undefined) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/** A score's number: up to three decimals, no trailing zeros (0.75, 1, 0.333). */
export function score(x) {
  if (x === null || x === undefined) return "–";
  if (Math.abs(x) >= 1000) return compact(x);
  const s = String(Number(x.toFixed(3)));
  return s === "-0" ? "0" : s;
}

export function percent(x) {
  if (x === null || x === undefined) return "–";
  return `${(x * 100).toFixed(x < 0.1 ? 2 : 1)}%`;
}

/** A timestamp in the reader's local time, to the millisecond. */
export function time(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Time ranges people pick. */
export const RANGES = [
  ["15m", "Last 15 minutes", 15 * 60e3],
  ["1h", "Last hour", 3600e3],
  ["6h", "Last 6 hours", 6 * 3600e3],
  ["24h", "Last 24 hours", 24 * 3600e3],
  ["7d", "Last 7 days", 7 * 24 * 3600e3],
  ["30d", "Last 30 days", 30 * 24 * 3600e3],
];

/** `{from, to}` as RFC 3339 for a preset (default 1h) or explicit params. */
export function timeWindow(params, fallback = "1h") {
  if (params.from && params.to) return { from: params.from, to: params.to };
  const range = RANGES.find(([k]) => k === (params.range || fallback)) || RANGES[1];
  const to = new Date();
  return { from: new Date(to.getTime() - range[2]).toISOString(), to: to.toISOString() };
}

/** Parameters that repeat: always a list in `parseHash`'s params. */
const LISTS = new Set(["attr", "filter"]);

/** Parses `#/page/arg?x=1&y=2` into {page, arg, params} (params: last value wins, `attr` and `filter` are lists). */
export function parseHash(hash) {
  const [path, ...rest] = hash.replace(/^#/, "").split("?");
  const query = rest.join("?");
  const parts = path.split("/").filter(Boolean);
  const params = {};
  const search = new URLSearchParams(query);
  for (const [k, v] of search) {
    if (LISTS.has(k)) (params[k] = params[k] || []).push(v);
    else params[k] = v;
  }
  return { page: parts[0] || "", arg: parts[1] ? decodeURIComponent(parts[1]) : "", params };
}

/** `#/page?params` (empty values left out). */
export function hashOf(page, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined && one !== null && one !== "") q.append(k, one);
  }
  const s = q.toString();
  return `#/${page}${s ? `?${s}` : ""}`;
}

/** OpenTelemetry's severity ranges: the name of a record's severity number. */
const SEVERITY_NAMES = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/** A log record's severity as it reads: its text, else its number's range name. */
export function severity(number, text) {
  if (text) return text;
  if (!number || number < 1 || number > 24) return "–";
  return SEVERITY_NAMES[Math.floor((number - 1) / 4)];
}

/** The severity's range (for styling): trace, debug, info, warn, error, fatal or unset. */
export function severityClass(number) {
  if (!number || number < 1 || number > 24) return "unset";
  return SEVERITY_NAMES[Math.floor((number - 1) / 4)].toLowerCase();
}

/** A record's body as text: a string as it is, anything else as JSON. */
export function bodyText(body) {
  if (body === null || body === undefined) return "";
  return typeof body === "string" ? body : JSON.stringify(body);
}

/** Nanosecond-precise RFC 3339 time as milliseconds since the epoch (with fractions). */
export function ms(iso) {
  const m = /\.(\d+)/.exec(iso);
  return Date.parse(iso) + (m && m[1].length > 3 ? Number(`0.${m[1].slice(3)}`) : 0);
}

/** A stable colour per name (services, models): a hue from its hash. */
export function colour(name) {
  let hash = 2166136261;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619);
  return `hsl(${(hash >>> 0) % 360} 60% 48%)`;
}

/**
 * Marks that `page` has drawn its data (`observatory:rendered:<page>` in
 * the Performance timeline; the UI benchmark reads it).
 */
export function rendered(page) {
  performance.mark(`observatory:rendered:${page}`);
}
