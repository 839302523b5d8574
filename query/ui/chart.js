// Time-series charts drawn as SVG: one line per series, a y axis with four
// ticks, the window's start and end on the x axis, and a legend in text
// (colour is never the only way to tell series apart: the legend names
// them and each line's <title> names it on hover).

import { h } from "./dom.js";
import { colour } from "./format.js";

const WIDTH = 560;
const HEIGHT = 180;
const PAD = { left: 56, right: 8, top: 10, bottom: 22 };

/**
 * lineChart({title, from, to, series: [{name, points: [[ms, value]]}], format, width?, height?})
 * (width and height of the drawing in its own units; it scales to its box).
 */
export function lineChart({ title, from, to, series, format, width, height }) {
  const W = width || WIDTH;
  const H = height || HEIGHT;
  const t0 = Date.parse(from);
  const t1 = Math.max(Date.parse(to), t0 + 1);
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null && Number.isFinite(v));
  const max = niceMax(Math.max(0, ...values));
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(
      h("svg:line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }),
      h("svg:text", { x: PAD.left - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)),
    );
  }
  const label = (t) => new Date(t).toISOString().slice(5, 16).replace("T", " ");
  svg.append(
    h("svg:text", { x: PAD.left, y: H - 6, class: "axis" }, label(t0)),
    h("svg:text", { x: W - PAD.right, y: H - 6, class: "axis", "text-anchor": "end" }, `${label(t1)} UTC`),
  );
  for (const s of series) {
    const pts = s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
    if (!pts.length) continue;
    const c = s.colour || colour(s.name);
    const line = h("svg:polyline", { points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "), class: "series", stroke: c, "stroke-dasharray": s.dash || null }, h("svg:title", {}, s.name));
    svg.append(line);
    if (pts.length === 1) svg.append(h("svg:circle", { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 3, fill: c }, h("svg:title", {}, `${s.name}: ${format(pts[0][1])}`)));
  }
  return h(
    "figure",
    { class: "chart-box" },
    h("figcaption", {}, title),
    values.length ? svg : h("p", { class: "muted empty-chart" }, "No data in this window."),
    h("ul", { class: "chart-legend" }, series.map((s) => h("li", {}, h("svg:svg", { width: 14, height: 4, "aria-hidden": "true" }, h("svg:line", { x1: 0, x2: 14, y1: 2, y2: 2, stroke: s.colour || colour(s.name), "stroke-width": 3, "stroke-dasharray": s.dash || null })), ` ${s.name}`))),
  );
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * stackedBars({title, labels: ["2026-12-04", ...], series: [{name, values: [n per label]}], format}):
 * a bar per label, its series stacked, with the same axis and legend as lineChart.
 */
export function stackedBars({ title, labels, series, format }) {
  const [W, H] = [WIDTH, HEIGHT];
  const totals = labels.map((_, i) => series.reduce((a, s) => a + (s.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const slot = (W - PAD.left - PAD.right) / Math.max(labels.length, 1);
  const bar = Math.max(2, Math.min(40, slot * 0.7));
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(
      h("svg:line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }),
      h("svg:text", { x: PAD.left - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)),
    );
  }
  labels.forEach((label, i) => {
    const x = PAD.left + slot * i + (slot - bar) / 2;
    let base = 0;
    for (const s of series) {
      const v = s.values[i] || 0;
      if (v > 0) svg.append(h("svg:rect", { x, width: bar, y: y(base + v), height: Math.max(0.5, y(base) - y(base + v)), fill: s.colour || colour(s.name) }, h("svg:title", {}, `${label} ${s.name}: ${format(v)}`)));
      base += v;
    }
    // Every label when they fit, else about eight of them.
    if (i % Math.ceil(labels.length / 8) === 0) svg.append(h("svg:text", { x: x + bar / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, label.slice(5)));
  });
  return h(
    "figure",
    { class: "chart-box" },
    h("figcaption", {}, title),
    labels.length ? svg : h("p", { class: "muted empty-chart" }, "No data in this window."),
    h("ul", { class: "chart-legend" }, series.map((s) => h("li", {}, h("svg:svg", { width: 10, height: 10, "aria-hidden": "true" }, h("svg:rect", { width: 10, height: 10, rx: 2, fill: s.colour || colour(s.name) })), ` ${s.name}`))),
  );
}
