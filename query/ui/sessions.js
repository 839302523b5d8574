// Sessions: the conversations of a window, one row each (turns, duration,
// tokens, cost, users, errors, mean scores), from GET /api/v1/sessions,
// with its filters, sorts and cursor pages. The state is in the URL
// (`#/sessions?...`); a row opens `#/session/<id>`.

import { get } from "./api.js";
import { h, field, notice } from "./dom.js";
import { means } from "./scores.js";
import * as fmt from "./format.js";

const SORTS = [
  ["last_activity", "Last activity"],
  ["cost", "Cost"],
  ["length", "Turns"],
];

const TEXT_FILTERS = [
  ["user", "User"],
  ["service", "Service"],
  ["score", "Score name", "helpfulness"],
  ["min_score", "Min mean", "0.5"],
  ["max_score", "Max mean", "1"],
];

export function render(main, _arg, params) {
  const list = h("div", { class: "list", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading sessions…"));
  main.replaceChildren(h("h1", {}, "Sessions"), filters(params), list);
  load(list, params);
}

function filters(params) {
  const range = h("select", { name: "range" }, fmt.RANGES.map(([k, label]) => h("option", { value: k, selected: (params.range || "7d") === k }, label)));
  const sort = h("select", { name: "sort" }, SORTS.map(([k, label]) => h("option", { value: k, selected: (params.sort || "last_activity") === k }, label)));
  const errors = h(
    "select",
    { name: "has_errors" },
    h("option", { value: "" }, "Any"),
    h("option", { value: "true", selected: params.has_errors === "true" }, "With errors"),
    h("option", { value: "false", selected: params.has_errors === "false" }, "Without errors"),
  );
  const inputs = TEXT_FILTERS.map(([name, label, placeholder]) => field(label, h("input", { name, value: params[name] || "", placeholder: placeholder || "", autocomplete: "off" })));
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Session filters" },
    field("Last active", range),
    field("Sort by", sort),
    field("Errors", errors),
    inputs,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search"), h("a", { href: "#/sessions", class: "button secondary" }, "Clear")),
  );
  const submit = () => {
    const next = {};
    for (const [k, v] of new FormData(form)) if (String(v).trim()) next[k] = String(v).trim();
    location.hash = fmt.hashOf("sessions", next);
  };
  form.addEventListener("submit", (e) => (e.preventDefault(), submit()));
  sort.addEventListener("change", submit);
  return form;
}

async function load(box, params) {
  const { from, to } = fmt.timeWindow(params, "7d");
  const query = { ...params, from, to, limit: params.limit || 50 };
  delete query.range;
  let page;
  try {
    page = await get("/api/v1/sessions", query);
  } catch (e) {
    box.setAttribute("aria-busy", "false");
    box.replaceChildren(notice("error", `The sessions did not load: ${e.message}`));
    return;
  }
  box.setAttribute("aria-busy", "false");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  if (params.cursor) pager.append(h("a", { href: fmt.hashOf("sessions", { ...params, cursor: null }), class: "button secondary" }, "First page"));
  if (page.next_cursor) {
    // Pin the window, so that the next page continues this one.
    const next = { ...params, from, to, cursor: page.next_cursor };
    delete next.range;
    pager.append(h("a", { href: fmt.hashOf("sessions", next), class: "button", rel: "next" }, "Next page"));
  }
  box.replaceChildren(
    page.sessions.length ? sessionTable(page.sessions, `Active ${fmt.time(from)} – ${fmt.time(to)}`) : h("p", { class: "empty" }, "No session was active in this window."),
    pager,
  );
  fmt.rendered("sessions");
}

/** A link to one session's transcript. */
export function sessionHref(id) {
  return `#/session/${encodeURIComponent(id)}`;
}

/** Sessions as a table (also the user page's list). */
export function sessionTable(rows, caption) {
  const head = ["Session", "Last activity", "Turns", "Duration", "Tokens", "Cost", "Users", "Errors", "Mean scores"];
  const num = new Set(["Turns", "Duration", "Tokens", "Cost", "Errors"]);
  return h(
    "table",
    { class: "sessions" },
    caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col", class: num.has(c) ? "num" : null }, c)))),
    h(
      "tbody",
      {},
      rows.map((s) =>
        h(
          "tr",
          { dataset: { sessionId: s.session_id } },
          h("td", { class: "name" }, h("a", { href: sessionHref(s.session_id), class: "rowlink" }, s.session_id), s.models.length ? h("span", { class: "chip" }, s.models.join(", ")) : null),
          h("td", { class: "start" }, fmt.time(s.last_time)),
          h("td", { class: "num" }, fmt.int(s.traces)),
          h("td", { class: "num" }, fmt.duration(s.duration_ms)),
          h("td", { class: "num" }, fmt.int(s.total_tokens)),
          h("td", { class: "num" }, fmt.cost(s.cost_usd)),
          h("td", { class: "users" }, s.users.length ? s.users.map((u, i) => [i ? ", " : "", h("a", { href: `#/user/${encodeURIComponent(u)}` }, u)]) : h("span", { class: "muted" }, "–")),
          h("td", { class: "num" }, s.errors ? h("span", { class: "bad" }, `✕ ${fmt.int(s.errors)}`) : "0"),
          h("td", { class: "scores-cell" }, means(s.scores)),
        ),
      ),
    ),
  );
}
