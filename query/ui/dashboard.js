// Costs and performance over a window: cost, tokens, calls, error rate,
// latency and time to first token by model, provider, service or
// environment; totals, the most costly groups, the budgets with their
// use and a month-end forecast, and the scores per name (count, mean or
// labels, over time and per model or service). Reads /api/v1/llm/metrics,
// /llm/costs, /budgets and /scores/summary, the same numbers a script gets.
// The totals come from spans or from the services' GenAI metrics (`source`:
// auto, spans or metrics, in the URL); a caption says which, from the
// answer's `signal` (an API without it reads spans only).

import { get } from "./api.js";
import { h, field, fact, notice } from "./dom.js";
import { lineChart } from "./chart.js";
import * as fmt from "./format.js";

const GROUPS = [
  ["model", "Model"],
  ["provider", "Provider"],
  ["service", "Service"],
  ["environment", "Environment"],
];
const SOURCES = [
  ["auto", "Auto"],
  ["spans", "Spans"],
  ["metrics", "Metrics"],
];
const MAX_SERIES = 8;
/** The bucket of each window: under 300 points, hourly from 24 hours on. */
const BUCKETS = { "15m": "1m", "1h": "1m", "6h": "5m", "24h": "1h", "7d": "6h", "30d": "12h" };

export function render(main, _arg, params) {
  const range = params.range || "24h";
  const group = params.group_by || "model";
  const source = SOURCES.some(([k]) => k === params.source) ? params.source : "auto";
  const controls = h(
    "form",
    { class: "filters", "aria-label": "Dashboard window" },
    field("Window", h("select", { name: "range" }, fmt.RANGES.map(([k, label]) => h("option", { value: k, selected: k === range }, label)))),
    field("By", h("select", { name: "group_by" }, GROUPS.map(([k, label]) => h("option", { value: k, selected: k === group }, label)))),
    field("Numbers from", h("select", { name: "source", title: "Auto: GenAI metrics where a service records them (they count every call, traced or not), spans elsewhere" }, SOURCES.map(([k, label]) => h("option", { value: k, selected: k === source }, label)))),
  );
  controls.addEventListener("change", () => {
    const data = new FormData(controls);
    location.hash = fmt.hashOf("dashboard", { range: data.get("range"), group_by: data.get("group_by"), source: data.get("source") });
  });
  const body = h("div", { class: "dashboard", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
  main.replaceChildren(h("h1", {}, "Costs and performance"), controls, body);
  load(body, range, group, source);
}

async function load(body, range, group, source) {
  const { from, to } = fmt.timeWindow({ range });
  // Whole-hour buckets read the hourly rollups (tens of milliseconds over
  // a day); finer ones the per-minute rollups, which only short windows need.
  const bucket = BUCKETS[range] || "1h";
  // Scores group by model or service (the summary has no provider or environment).
  const scoreGroup = group === "service" ? "service" : "model";
  const scores = scoreSection(get("/api/v1/scores/summary", { from, to, bucket, group_by: scoreGroup }), scoreGroup, bucket);
  let grouped;
  let all;
  let costs;
  // Auto is the API's default: it is sent only when another is chosen.
  const read = (s) =>
    Promise.all([
      get("/api/v1/llm/metrics", { from, to, bucket, group_by: group, source: s }),
      get("/api/v1/llm/metrics", { from, to, bucket, source: s }),
      get("/api/v1/llm/costs", { from, to, group_by: group, top: 10, source: s }),
    ]);
  let refused = false;
  try {
    try {
      [grouped, all, costs] = await read(source === "auto" ? undefined : source);
    } catch (e) {
      // An API without the choice refuses the parameter: read its spans.
      if (!(e.status === 400 && e.problem && e.problem.parameter === "source" && /unknown parameter/.test(e.problem.detail || ""))) throw e;
      refused = true;
      [grouped, all, costs] = await read(undefined);
    }
  } catch (e) {
    body.setAttribute("aria-busy", "false");
    body.replaceChildren(notice("error", `The dashboard did not load: ${e.message}`));
    return;
  }
  body.setAttribute("aria-busy", "false");
  const name = (s) => s.group[group] || "(none)";
  // The costliest groups get a line each; the rest are summed in "other".
  const rank = new Map(costs.top.map((g, i) => [g.group[group], i]));
  const series = grouped.series
    .slice()
    .sort((a, b) => (rank.get(a.group[group]) ?? 1e9) - (rank.get(b.group[group]) ?? 1e9));
  const shown = series.slice(0, MAX_SERIES);
  const rest = series.slice(MAX_SERIES);
  // `summed`: the rest of the groups as one "other" line (not for percentiles).
  const lines = (value, summed = true) => {
    const out = shown.map((s) => ({ name: name(s), points: s.points.map((p) => [Date.parse(p.time), value(p)]) }));
    if (rest.length && summed) {
      const sum = new Map();
      for (const s of rest) for (const p of s.points) sum.set(p.time, (sum.get(p.time) || 0) + value(p));
      out.push({ name: `other (${rest.length})`, colour: "#888", dash: "4 3", points: [...sum].map(([t, v]) => [Date.parse(t), v]) });
    }
    return out;
  };
  const total = all.series[0] ? all.series[0].points : [];
  const one = (label, value, dash, colour) => ({ name: label, dash, colour, points: total.map((p) => [Date.parse(p.time), value(p)]) });
  const w = { from: grouped.from, to: grouped.to };
  const t = costs.total;
  const tiles = h(
    "div",
    { class: "tiles" },
    tile("Cost", fmt.cost(t.cost_usd), t.unpriced_calls ? `${fmt.int(t.unpriced_calls)} calls not priced` : ""),
    tile("Model calls", fmt.int(t.calls)),
    tile("Tokens", fmt.compact(t.input_tokens + t.output_tokens), `${fmt.compact(t.input_tokens)} in · ${fmt.compact(t.output_tokens)} out`),
    tile("Error rate", fmt.percent(t.error_rate), `${fmt.int(t.errors)} errors`),
  );
  const charts = h(
    "div",
    { class: "charts" },
    lineChart({ title: `Cost per ${grouped.bucket} (USD)`, ...w, series: lines((p) => p.cost_usd), format: fmt.cost }),
    lineChart({ title: `Tokens per ${grouped.bucket}`, ...w, series: lines((p) => p.input_tokens + p.output_tokens), format: fmt.compact }),
    lineChart({ title: `Model calls per ${grouped.bucket}`, ...w, series: lines((p) => p.calls), format: fmt.compact }),
    lineChart({ title: "Error rate", ...w, series: lines((p) => p.error_rate), format: fmt.percent }),
    lineChart({
      title: "Latency, all calls",
      ...w,
      series: [
        one("p50", (p) => (p.latency_ms ? p.latency_ms.p50 : null), null, "#2b7bb9"),
        one("p95", (p) => (p.latency_ms ? p.latency_ms.p95 : null), "6 3", "#d08a10"),
        one("p99", (p) => (p.latency_ms ? p.latency_ms.p99 : null), "2 2", "#c0392b"),
      ],
      format: fmt.duration,
    }),
    lineChart({ title: `Latency p95 by ${group}`, ...w, series: lines((p) => (p.latency_ms ? p.latency_ms.p95 : null), false), format: fmt.duration }),
    lineChart({ title: `Time to first token p50 by ${group}`, ...w, series: lines((p) => (p.ttft_ms ? p.ttft_ms.p50 : null), false), format: fmt.duration }),
    lineChart({
      title: "Time to first token (streaming calls)",
      ...w,
      series: [one("p50", (p) => (p.ttft_ms ? p.ttft_ms.p50 : null), null, "#2b7bb9"), one("p95", (p) => (p.ttft_ms ? p.ttft_ms.p95 : null), "6 3", "#d08a10")],
      format: fmt.duration,
    }),
  );
  body.replaceChildren(sourceCaption(costs.signal || grouped.signal, source, refused), tiles, charts, topTable(costs, group), budgets(costs.budgets), scores);
  fmt.rendered("dashboard");
}

/**
 * Where the numbers come from, from the answer's `signal` ({requested,
 * used: spans|metrics|both, metrics_services}); without one, spans.
 */
function sourceCaption(signal, source, refused) {
  const used = signal && signal.used ? signal.used : "spans";
  const services = (signal && signal.metrics_services) || [];
  const list = services.join(", ");
  const sampled = signal && signal.requested === "metrics" ? "" : " (traces are sampled)";
  let text;
  if (refused) text = source === "metrics" ? "This API cannot read the totals from GenAI metrics yet: totals from spans." : "Totals from spans.";
  else if (used === "metrics" && !services.length) text = "Totals from GenAI metrics: none in this window.";
  else if (used === "metrics") text = `Totals ${services.length ? `for ${list} ` : ""}from GenAI metrics${sampled}.`;
  else if (used === "both") text = `Totals ${services.length ? `for ${list} ` : "of some services "}from GenAI metrics${sampled}; other services from spans.`;
  else if (source === "metrics") text = "No GenAI metrics in this window: totals from spans.";
  else text = "Totals from spans.";
  return h("p", { class: `source-caption${refused && source === "metrics" ? " notice" : ""}`, role: "status", dataset: { used: refused ? "spans" : used } }, text);
}

function tile(label, value, sub) {
  return h("div", { class: "tile" }, h("div", { class: "muted" }, label), h("div", { class: "big" }, value), sub ? h("div", { class: "muted small" }, sub) : null);
}

function topTable(costs, group) {
  const rows = costs.top.map((g) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, g.group[group] || "(none)"),
      h("td", { class: "num" }, fmt.cost(g.cost_usd)),
      h("td", { class: "num" }, fmt.percent(g.share)),
      h("td", { class: "num" }, fmt.int(g.calls)),
      h("td", { class: "num" }, fmt.compact(g.input_tokens + g.output_tokens)),
      h("td", { class: "num" }, fmt.percent(g.error_rate)),
    ),
  );
  if (costs.other) rows.push(h("tr", { class: "muted" }, h("th", { scope: "row" }, "everything else"), h("td", { class: "num" }, fmt.cost(costs.other.cost_usd)), h("td"), h("td", { class: "num" }, fmt.int(costs.other.calls)), h("td"), h("td")));
  return h(
    "section",
    {},
    h("h2", {}, `Top ${costs.top.length} by cost`),
    rows.length
      ? h("table", { class: "top" }, h("thead", {}, h("tr", {}, ["", "Cost", "Share", "Calls", "Tokens", "Errors"].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No model calls in this window."),
  );
}

/** Budgets: this month's spend, its share, and a straight-line forecast to month end. */
function budgets(list) {
  const now = new Date();
  const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const monthEnd = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  const elapsed = Math.max((now.getTime() - monthStart) / (monthEnd - monthStart), 1 / 720);
  return h(
    "section",
    {},
    h("h2", {}, "Budgets this month"),
    list.length
      ? h(
          "table",
          { class: "budgets" },
          h("thead", {}, h("tr", {}, ["Scope", "Monthly", "Spent", "Used", "Forecast", ""].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            list.map((b) => {
              const forecast = b.spent_usd / elapsed;
              const over = b.exceeded || forecast > b.monthly_usd;
              return h(
                "tr",
                {},
                h("th", { scope: "row" }, b.service ? `service ${b.service}` : "whole tenant"),
                h("td", { class: "num" }, fmt.cost(b.monthly_usd)),
                h("td", { class: "num" }, fmt.cost(b.spent_usd)),
                h("td", {}, h("meter", { min: 0, max: 1, value: Math.min(b.used_fraction || 0, 1), "aria-label": "used" }), ` ${fmt.percent(b.used_fraction || 0)}`),
                h("td", { class: "num" }, fmt.cost(forecast)),
                h("td", {}, b.exceeded ? h("span", { class: "bad" }, "✕ exceeded") : over ? h("span", { class: "warn" }, "! on course to exceed") : h("span", { class: "ok" }, "✓ on track")),
              );
            }),
          ),
        )
      : h("p", { class: "muted" }, "No budget is set. An admin sets one with PUT /api/v1/budgets/tenant."),
  );
}

/** The scores of the window: a card per name, filled when `summary` answers. */
function scoreSection(summary, group, bucket) {
  const box = h("section", { class: "score-summary", "aria-busy": "true" }, h("h2", {}, "Scores"), h("p", { class: "muted" }, "Loading scores…"));
  summary.then(
    (s) => {
      box.setAttribute("aria-busy", "false");
      box.replaceChildren(
        h("h2", {}, "Scores"),
        s.names.length ? h("div", { class: "charts" }, s.names.map((n) => scoreCard(n, s, group, bucket))) : h("p", { class: "muted" }, "No scores in this window. Editors add them on a trace; evaluators send them to POST /api/v1/scores."),
      );
    },
    (e) => {
      box.setAttribute("aria-busy", "false");
      box.replaceChildren(h("h2", {}, "Scores"), notice("error", `The scores did not load: ${e.message}`));
    },
  );
  return box;
}

/** Labels and their counts, most first, as text: "good 5 (63%) · bad 3 (38%)". */
function labelText(labels, count) {
  return Object.entries(labels || {})
    .sort((a, b) => b[1] - a[1])
    .map(([l, n]) => `${l} ${fmt.int(n)} (${fmt.percent(n / Math.max(count, 1))})`)
    .join(" · ");
}

function scoreCard(n, s, group, bucket) {
  const labelled = n.labels && Object.keys(n.labels).length;
  const series = n.series || [];
  const w = { from: s.from, to: s.to };
  const chart =
    n.mean !== null
      ? lineChart({ title: `Mean per ${bucket}`, ...w, series: [{ name: n.name, points: series.map((p) => [Date.parse(p.time), p.mean]) }], format: fmt.score })
      : lineChart({
          title: `Scores per ${bucket}${labelled ? " by label" : ""}`,
          ...w,
          series: labelled ? Object.keys(n.labels).map((l) => ({ name: l, points: series.map((p) => [Date.parse(p.time), (p.labels || {})[l] || 0]) })) : [{ name: n.name, points: series.map((p) => [Date.parse(p.time), p.count]) }],
          format: fmt.compact,
        });
  const groups = n.groups || [];
  return h(
    "article",
    { class: "chart-box score-card", dataset: { scoreName: n.name } },
    h("h3", {}, n.name, h("span", { class: "chip" }, n.data_type)),
    h(
      "dl",
      { class: "facts inline" },
      fact("Count", fmt.int(n.count)),
      n.mean !== null ? fact("Mean", fmt.score(n.mean)) : null,
      labelled ? fact("Labels", labelText(n.labels, n.count)) : null,
    ),
    chart,
    groups.length
      ? h(
          "table",
          { class: "top score-groups" },
          h("thead", {}, h("tr", {}, [group === "service" ? "Service" : "Model", "Count", n.mean !== null ? "Mean" : "Labels"].map((c, i) => h("th", { scope: "col", class: i === 1 ? "num" : null }, c)))),
          h(
            "tbody",
            {},
            groups.map((g) => h("tr", {}, h("th", { scope: "row" }, g.group || "(unknown)"), h("td", { class: "num" }, fmt.int(g.count)), h("td", { class: n.mean !== null ? "num" : null }, n.mean !== null ? fmt.score(g.mean) : labelText(g.labels, g.count)))),
          ),
        )
      : null,
  );
}
