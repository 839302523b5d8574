// One end user: their totals, their cost per day by model over a window
// (a stacked bar per UTC day) with the models' sums, and their sessions
// active in the window, each linking to its transcript. From
// GET /api/v1/users/{id}; `#/user/<id>?range=30d`.

import { get } from "./api.js";
import { h, field, fact, notice } from "./dom.js";
import { stackedBars } from "./chart.js";
import { means } from "./scores.js";
import { sessionTable } from "./sessions.js";
import * as fmt from "./format.js";

const DAY = 86400e3;

export function render(main, id, params) {
  const range = params.range || "30d";
  const select = h("select", { name: "range" }, fmt.RANGES.map(([k, label]) => h("option", { value: k, selected: k === range }, label)));
  select.addEventListener("change", () => (location.hash = fmt.hashOf(`user/${encodeURIComponent(id)}`, { range: select.value })));
  const body = h("div", { class: "user", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading user…"));
  main.replaceChildren(h("h1", {}, "User ", h("code", {}, id)), body);
  const { from, to } = fmt.timeWindow({ range });
  get(`/api/v1/users/${encodeURIComponent(id)}`, { from, to }).then(
    (u) => {
      body.setAttribute("aria-busy", "false");
      body.replaceChildren(...view(u, from, to, h("form", { class: "inline", "aria-label": "Window" }, field("Window", select))));
      fmt.rendered("user");
    },
    (e) => {
      body.setAttribute("aria-busy", "false");
      body.replaceChildren(notice("error", e.status === 404 ? "No user with this id for your tenant." : `The user did not load: ${e.message}`));
    },
  );
}

function view(u, from, to, controls) {
  const facts = h(
    "dl",
    { class: "facts user-facts", "aria-label": "All time" },
    fact("First seen", fmt.time(u.first_seen)),
    fact("Last seen", fmt.time(u.last_seen)),
    fact("Model calls", fmt.int(u.llm_calls)),
    fact("Errors", u.errors ? h("span", { class: "bad" }, `✕ ${fmt.int(u.errors)} (${fmt.percent(u.error_rate)})`) : "0"),
    fact("Tokens", `${fmt.int(u.total_tokens)} (${fmt.compact(u.input_tokens)} in · ${fmt.compact(u.output_tokens)} out)`),
    fact("Cost", h("span", { class: "cost" }, fmt.cost(u.cost_usd))),
    fact("Mean latency", fmt.duration(u.mean_latency_ms)),
    fact("p95 latency", fmt.duration(u.p95_latency_ms)),
    fact("Sessions", fmt.int(u.sessions)),
    fact("Mean scores", means(u.scores)),
  );
  const days = u.cost_by_day;
  const models = [...new Set(days.map((d) => d.model))].sort();
  const labels = [];
  for (let t = Math.floor(Date.parse(from) / DAY) * DAY; t <= Date.parse(to); t += DAY) labels.push(new Date(t).toISOString().slice(0, 10));
  const series = models.map((m) => ({ name: m, values: labels.map((l) => days.filter((d) => d.day === l && d.model === m).reduce((a, d) => a + d.cost_usd, 0)) }));
  const byModel = models.map((m) => {
    const of = days.filter((d) => d.model === m);
    const sum = (k) => of.reduce((a, d) => a + d[k], 0);
    return { model: m, calls: sum("llm_calls"), errors: sum("errors"), tokens: sum("input_tokens") + sum("output_tokens"), cost: sum("cost_usd") };
  });
  const windowCost = byModel.reduce((a, m) => a + m.cost, 0);
  return [
    h("h2", {}, "All time"),
    facts,
    h("div", { class: "section-head" }, h("h2", {}, "In the window"), controls),
    h(
      "div",
      { class: "charts" },
      stackedBars({ title: `Cost per day by model (USD, UTC days): ${fmt.cost(windowCost)}`, labels, series, format: fmt.cost }),
      h(
        "section",
        { class: "chart-box" },
        h("h3", {}, "By model"),
        byModel.length
          ? h(
              "table",
              { class: "top by-model" },
              h("thead", {}, h("tr", {}, ["Model", "Cost", "Calls", "Errors", "Tokens"].map((c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
              h(
                "tbody",
                {},
                byModel.map((m) => h("tr", { dataset: { model: m.model } }, h("th", { scope: "row" }, m.model), h("td", { class: "num" }, fmt.cost(m.cost)), h("td", { class: "num" }, fmt.int(m.calls)), h("td", { class: "num" }, fmt.int(m.errors)), h("td", { class: "num" }, fmt.int(m.tokens)))),
              ),
            )
          : h("p", { class: "muted" }, "No model calls in this window."),
      ),
    ),
    h("h2", {}, `Sessions active in the window (${u.recent_sessions.length})`),
    u.recent_sessions.length ? sessionTable(u.recent_sessions) : h("p", { class: "empty" }, "No session in this window."),
  ];
}
