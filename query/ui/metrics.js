// The metrics explorer: the stored OpenTelemetry metrics
// (`GET /api/v1/metrics/names`), one of them charted over a window from
// `GET /api/v1/metrics/query` with an aggregation that fits its kind, split
// by a label (`/metrics/labels`) and narrowed by label=value filters. The
// whole view is in the URL (`#/metrics?name=&agg=&group_by=&filter=&range=`
// or `from`/`to`, `step`), so a link reproduces it.

import { get } from "./api.js";
import { h, field, notice, replace } from "./dom.js";
import { lineChart } from "./chart.js";
import * as fmt from "./format.js";

/** The aggregations of each kind, the first the default. */
const AGGS = {
  gauge: ["avg", "sum", "min", "max"],
  sum: ["rate", "increase", "sum", "avg", "min", "max"],
  histogram: ["p95", "p50", "p90", "p99", "avg", "sum", "rate", "increase"],
  exponential_histogram: ["p95", "p50", "p90", "p99", "avg", "sum", "rate", "increase"],
  summary: ["avg", "sum", "min", "max"],
};
const AGG_LABELS = {
  sum: "sum",
  avg: "average",
  min: "min",
  max: "max",
  rate: "rate (per second)",
  increase: "increase per step",
  p50: "p50",
  p90: "p90",
  p95: "p95",
  p99: "p99",
};
const STEPS = [["", "Auto"], ["10s", "10 s"], ["1m", "1 min"], ["5m", "5 min"], ["15m", "15 min"], ["1h", "1 hour"], ["6h", "6 hours"], ["24h", "1 day"]];
/** Lines drawn at most (the largest by mean); the table lists every group. */
const MAX_LINES = 20;

export function aggsOf(kind) {
  return AGGS[kind] || AGGS.gauge;
}

export function render(main, _arg, params) {
  const body = h("div", { class: "metrics-view", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading metrics…"));
  main.replaceChildren(h("h1", {}, "Metrics"), body);
  let alive = true;
  get("/api/v1/metrics/names").then(
    (names) => alive && view(body, names.metrics || [], params, () => alive),
    (e) => {
      body.setAttribute("aria-busy", "false");
      body.replaceChildren(notice("error", `The metrics did not load: ${e.message}`));
    },
  );
  return () => (alive = false);
}

/** The URL of a view: `p` with empty values left out. */
function go(p) {
  location.hash = fmt.hashOf("metrics", p);
}

/** The state that carries over when the metric changes: its window and step. */
function windowOf(params) {
  return { range: params.range, from: params.from, to: params.to, step: params.step };
}

async function view(body, metrics, params, alive) {
  body.setAttribute("aria-busy", "false");
  if (!metrics.length) {
    body.replaceChildren(h("p", { class: "empty" }, "No metric is stored for your tenant yet. Send OTLP metrics to the collector (docs/ingest.md)."));
    fmt.rendered("metrics");
    return;
  }
  const metric = metrics.find((m) => m.name === params.name);
  if (!metric) {
    replace(
      body,
      params.name ? notice("error", `No metric named ${params.name} is stored for your tenant.`) : null,
      h("p", { class: "muted" }, "Pick a metric to chart."),
      catalogue(metrics, params),
    );
    fmt.rendered("metrics");
    return;
  }
  const aggs = aggsOf(metric.kind);
  const agg = aggs.includes(params.agg) ? params.agg : aggs[0];
  const filters = (params.filter || []).flatMap((f) => f.split(",")).filter((f) => f.includes("="));
  const state = { name: metric.name, agg, group_by: params.group_by, filter: filters, ...windowOf(params) };
  const { from, to } = fmt.timeWindow(params);
  const chartBox = h("div", { class: "metric-chart", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading the series…"));
  const labelsBox = h("div", { class: "metric-controls" });
  body.replaceChildren(labelsBox, chartBox);

  const [labels, answer] = await Promise.allSettled([
    get("/api/v1/metrics/labels", { name: metric.name }),
    get("/api/v1/metrics/query", { name: metric.name, agg, group_by: params.group_by, filter: filters, from, to, step: params.step }),
  ]);
  if (!alive()) return;
  const keys = labels.status === "fulfilled" ? labels.value.labels || [] : [];
  replace(labelsBox, controls(metrics, metric, state, keys), labels.status === "rejected" ? notice("error", `The labels did not load: ${labels.reason.message}`) : null);
  chartBox.setAttribute("aria-busy", "false");
  if (answer.status === "rejected") {
    const e = answer.reason;
    const where = e.problem && e.problem.parameter ? ` (${e.problem.parameter})` : "";
    chartBox.replaceChildren(notice("error", `The query failed: ${e.message}${where}`));
    return;
  }
  chartBox.replaceChildren(...chart(answer.value, metric, agg, state, from, to));
  fmt.rendered("metrics");
}

/** Every metric: name (a link to its chart), kind, unit, series, description. */
function catalogue(metrics, params) {
  return h(
    "table",
    { class: "metric-names" },
    h("thead", {}, h("tr", {}, ["Metric", "Kind", "Unit", "Series", "Description"].map((c, i) => h("th", { scope: "col", class: i === 3 ? "num" : null }, c)))),
    h(
      "tbody",
      {},
      metrics.map((m) =>
        h(
          "tr",
          { dataset: { metric: m.name } },
          h("th", { scope: "row" }, h("a", { href: fmt.hashOf("metrics", { name: m.name, ...windowOf(params) }) }, m.name)),
          h("td", {}, m.kind.replace("_", " ")),
          h("td", {}, m.unit || "–"),
          h("td", { class: "num" }, fmt.int(m.series)),
          h("td", { class: "muted" }, m.description || ""),
        ),
      ),
    ),
  );
}

function controls(metrics, metric, state, labels) {
  const select = (name, options, selected, onchange) => {
    const s = h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: v === selected }, label)));
    s.addEventListener("change", () => onchange(s.value));
    return s;
  };
  const metricSelect = select(
    "name",
    metrics.map((m) => [m.name, `${m.name} (${m.kind.replace("_", " ")}${m.unit ? `, ${m.unit}` : ""})`]),
    metric.name,
    (name) => go({ name, ...windowOf(state) }),
  );
  const aggSelect = select("agg", aggsOf(metric.kind).map((a) => [a, AGG_LABELS[a]]), state.agg, (agg) => go({ ...state, agg }));
  const keys = labels.map((l) => l.key);
  const groupSelect = select("group_by", [["", "(nothing)"], ...keys.map((k) => [k, k])], state.group_by || "", (g) => go({ ...state, group_by: g }));
  const range = select("range", [...fmt.RANGES.map(([k, label]) => [k, label]), ...(state.from ? [["custom", "Custom"]] : [])], state.from ? "custom" : state.range || "1h", (r) => {
    if (r !== "custom") go({ ...state, range: r, from: null, to: null });
  });
  const step = select("step", STEPS, state.step || "", (s) => go({ ...state, step: s }));

  // label=value conditions: each a chip that removes it; a form adds one.
  const current = h(
    "ul",
    { class: "metric-filters", "aria-label": "Filters" },
    state.filter.map((f, i) =>
      h(
        "li",
        { dataset: { filter: f } },
        h("code", {}, f),
        h("button", { type: "button", class: "icon", title: `Remove the filter ${f}`, "aria-label": `Remove the filter ${f}`, onclick: () => go({ ...state, filter: state.filter.filter((_, j) => j !== i) }) }, "×"),
      ),
    ),
  );
  const key = select("filter_key", keys.map((k) => [k, k]), keys[0], () => fillValues());
  const values = h("datalist", { id: "metric-label-values" });
  const value = h("input", { name: "filter_value", list: "metric-label-values", autocomplete: "off", placeholder: "value" });
  const fillValues = () => {
    const l = labels.find((x) => x.key === key.value);
    values.replaceChildren(...((l && l.values) || []).map((v) => h("option", { value: v })));
  };
  fillValues();
  const add = h(
    "form",
    { class: "add-filter", "aria-label": "Add a filter" },
    field("Label", key),
    field("Value", value),
    values,
    h("button", { type: "submit", disabled: !keys.length }, "Add filter"),
  );
  add.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!key.value) return;
    go({ ...state, filter: [...state.filter, `${key.value}=${value.value}`] });
  });
  return h(
    "div",
    {},
    h(
      "form",
      { class: "filters", "aria-label": "Metric query", onsubmit: (e) => e.preventDefault() },
      field("Metric", metricSelect),
      field("Aggregation", aggSelect),
      field("Group by", groupSelect),
      field("Window", range),
      field("Step", step),
    ),
    metric.description ? h("p", { class: "muted metric-description" }, metric.description) : null,
    h("div", { class: "filters filter-row" }, h("span", { class: "muted small" }, "Filters"), state.filter.length ? current : h("span", { class: "muted small" }, "none"), add),
  );
}

/** A group's name: its label values (`k=v, ...`; the value alone for one label). */
function groupName(labels, metricName) {
  const entries = Object.entries(labels || {});
  if (!entries.length) return metricName;
  if (entries.length === 1) return entries[0][1] === "" ? "(empty)" : entries[0][1];
  return entries.map(([k, v]) => `${k}=${v}`).join(", ");
}

/** How values read: by the metric's unit; counts for a histogram's rate and increase. */
function valueFormat(kind, unit, agg) {
  const counts = kind.endsWith("histogram") && (agg === "rate" || agg === "increase");
  const base = counts ? num : unitFormat(unit);
  return agg === "rate" ? (v) => `${base(v)}/s` : base;
}

/** A step in seconds as it reads: 10 s, 5 min, 1 h, 1 d. */
function stepLabel(sec) {
  if (sec % 86400 === 0) return `${sec / 86400} d`;
  if (sec % 3600 === 0) return `${sec / 3600} h`;
  if (sec % 60 === 0) return `${sec / 60} min`;
  return `${sec} s`;
}

function num(v) {
  if (v === null || v === undefined) return "–";
  if (v !== 0 && Math.abs(v) < 1) return String(Number(v.toPrecision(2)));
  return fmt.compact(v);
}

function unitFormat(unit) {
  if (unit === "s") return (v) => fmt.duration(v * 1000);
  if (unit === "ms") return (v) => fmt.duration(v);
  if (unit === "us") return (v) => fmt.duration(v / 1000);
  if (unit === "By") return (v) => `${num(v)}B`;
  if (unit === "%") return (v) => `${num(v)}%`;
  return num;
}

function chart(answer, metric, agg, state, from, to) {
  const format = valueFormat(answer.kind || metric.kind, answer.unit || metric.unit, agg);
  const step = (answer.step_seconds || 60) * 1000;
  // The window the API answered (aligned to its step) holds every point.
  let t0 = Date.parse(from);
  let t1 = Date.parse(to);
  const lines = (answer.series || []).map((s) => {
    const line = { name: groupName(s.labels, metric.name), labels: s.labels, points: [], last: null, min: Infinity, max: -Infinity, mean: 0 };
    for (const [t, v] of s.points) {
      line.points.push([t * 1000, v]);
      line.min = Math.min(line.min, v);
      line.max = Math.max(line.max, v);
      line.mean += v;
      line.last = v;
      t0 = Math.min(t0, t * 1000);
      t1 = Math.max(t1, t * 1000 + step);
    }
    line.mean /= Math.max(line.points.length, 1);
    return line;
  });
  lines.sort((a, b) => b.mean - a.mean);
  const drawn = lines.slice(0, MAX_LINES);
  const unit = answer.unit || metric.unit;
  const title = `${AGG_LABELS[agg]} of ${metric.name}${unit && !(metric.kind.endsWith("histogram") && (agg === "rate" || agg === "increase")) ? ` (${unit})` : ""}${state.group_by ? ` by ${state.group_by}` : ""}, per ${stepLabel(step / 1000)}`;
  const parts = [lineChart({ title, from: new Date(t0).toISOString(), to: new Date(t1).toISOString(), series: drawn, format, width: 1000, height: 260 })];
  if (lines.length > drawn.length) parts.push(notice("info", `${fmt.int(lines.length)} groups: the ${MAX_LINES} largest by mean are drawn; the table lists all.`));
  if (lines.length) {
    parts.push(
      h(
        "table",
        { class: "top metric-series" },
        h("caption", { class: "muted" }, `${fmt.int(lines.length)} line${lines.length === 1 ? "" : "s"}`),
        h("thead", {}, h("tr", {}, [state.group_by || "Series", "Points", "Last", "Min", "Mean", "Max"].map((c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
        h(
          "tbody",
          {},
          lines.map((l) =>
            h(
              "tr",
              { dataset: { group: l.name } },
              h("th", { scope: "row" }, h("i", { class: "swatch", dataset: { colour: l.name } }), l.name),
              h("td", { class: "num" }, fmt.int(l.points.length)),
              h("td", { class: "num" }, format(l.last)),
              h("td", { class: "num" }, format(l.min)),
              h("td", { class: "num" }, format(l.mean)),
              h("td", { class: "num" }, format(l.max)),
            ),
          ),
        ),
      ),
    );
  }
  for (const part of parts) for (const s of part.querySelectorAll ? part.querySelectorAll(".swatch") : []) s.style.background = fmt.colour(s.dataset.colour);
  return parts;
}
