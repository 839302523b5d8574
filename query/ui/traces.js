// The trace list: the filters of `GET /api/v1/traces`, sortable columns,
// cursor pages. The whole state is in the URL (`#/traces?...`), so a view
// can be shared and the back button goes to the previous page.

import { get } from "./api.js";
import { h, field, notice, timeRange, takeTimeRange } from "./dom.js";
import * as fmt from "./format.js";

const COLUMNS = [
  ["start_time", "Start", "start"],
  [null, "Trace", "name"],
  [null, "Service", "service"],
  ["duration", "Duration", "num"],
  ["span_count", "Spans", "num"],
  [null, "LLM calls", "num"],
  ["tokens", "Tokens", "num"],
  ["cost", "Cost", "num"],
  [null, "Status", "status"],
];

const TEXT_FILTERS = [
  ["service", "Service"],
  ["model", "Model"],
  ["provider", "Provider"],
  ["user", "User"],
  ["session", "Session"],
  ["name", "Span name"],
  ["min_duration", "Min duration", "250ms, 2s"],
  ["max_duration", "Max duration", "10s"],
  ["min_cost", "Min cost (USD)", "0.01"],
];

export function render(main, _arg, params) {
  const sort = params.sort || "start_time";
  const order = params.order || "desc";
  const form = filters(params);
  const table = h("div", { class: "list", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading traces…"));
  main.replaceChildren(h("h1", {}, "Traces"), form, table);
  load(table, params, sort, order);
}

function filters(params) {
  const time = timeRange(params);
  const status = h(
    "select",
    { name: "status" },
    h("option", { value: "" }, "Any"),
    h("option", { value: "error", selected: params.status === "error" }, "Error"),
    h("option", { value: "ok", selected: params.status === "ok" }, "OK"),
    h("option", { value: "unset", selected: params.status === "unset" }, "Unset"),
  );
  const inputs = TEXT_FILTERS.map(([name, label, placeholder]) =>
    field(label, h("input", { name, value: params[name] || "", placeholder: placeholder || "", autocomplete: "off" })),
  );
  const q = h("input", { type: "search", name: "q", value: params.q || "", placeholder: "words in prompts and completions" });
  const attrs = h("textarea", {
    name: "attr",
    rows: 2,
    placeholder: "key:op:value, one per line (gen_ai.request.model:eq:gpt-4o)",
  });
  attrs.value = (params.attr || []).join("\n");
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Trace filters" },
    ...time,
    field("Status", status),
    inputs,
    field("Text", q),
    field("Attributes", attrs),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search"), h("a", { href: "#/traces", class: "button secondary" }, "Clear")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = { sort: params.sort, order: params.order };
    const data = new FormData(form);
    for (const [k, v] of data) {
      if (k === "attr") next.attr = String(v).split("\n").map((s) => s.trim()).filter(Boolean);
      else if (takeTimeRange(data, k, v, next)) continue;
      else if (String(v).trim()) next[k] = String(v).trim();
    }
    location.hash = fmt.hashOf("traces", next);
  });
  return form;
}

async function load(box, params, sort, order) {
  const { from, to } = fmt.timeWindow(params);
  const query = { ...params, from, to, sort, order, limit: params.limit || 50 };
  delete query.range;
  let page;
  try {
    page = await get("/api/v1/traces", query);
  } catch (e) {
    box.setAttribute("aria-busy", "false");
    box.replaceChildren(notice("error", `The search failed: ${e.message}`));
    return;
  }
  box.setAttribute("aria-busy", "false");
  const rows = page.traces.map(row);
  const head = h(
    "tr",
    {},
    COLUMNS.map(([key, label, cls]) => {
      if (!key) return h("th", { scope: "col", class: cls }, label);
      const active = key === sort;
      const nextOrder = active && order === "desc" ? "asc" : "desc";
      const p = { ...params, sort: key, order: nextOrder };
      delete p.cursor;
      return h(
        "th",
        { scope: "col", class: cls, "aria-sort": active ? (order === "desc" ? "descending" : "ascending") : null },
        h("a", { href: fmt.hashOf("traces", p), title: `Sort by ${label.toLowerCase()}` }, label, active ? (order === "desc" ? " ▼" : " ▲") : ""),
      );
    }),
  );
  const table = h(
    "table",
    { class: "traces", onkeydown: arrows },
    h("caption", { class: "muted" }, `${fmt.time(page.from)} – ${fmt.time(page.to)}`),
    h("thead", {}, head),
    h("tbody", {}, rows),
  );
  const parts = [];
  if (page.partial) {
    parts.push(
      notice(
        "info",
        `The search stopped at its time budget after looking at ${fmt.int(page.scanned_traces)} traces; the list shows the matches so far. Go on with “More”.`,
      ),
    );
  }
  parts.push(rows.length ? table : h("p", { class: "empty" }, "No trace matches in this window."));
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  if (params.cursor) pager.append(h("a", { href: fmt.hashOf("traces", { ...params, cursor: null }), class: "button secondary" }, "First page"));
  if (page.next_cursor) {
    // Pin the window, so that the next page continues this one.
    const next = { ...params, from: page.from, to: page.to, cursor: page.next_cursor };
    delete next.range;
    pager.append(h("a", { href: fmt.hashOf("traces", next), class: "button", rel: "next" }, page.partial ? "More" : "Next page"));
  }
  parts.push(pager);
  box.replaceChildren(...parts);
  fmt.rendered("traces");
}

function row(t) {
  const link = `#/trace/${t.trace_id}`;
  const status = t.error ? h("span", { class: "bad" }, "✕ error") : h("span", { class: "ok" }, "✓ ok");
  return h(
    "tr",
    { dataset: { traceId: t.trace_id } },
    h("td", { class: "start" }, h("a", { href: link, class: "rowlink" }, fmt.time(t.start_time))),
    h("td", { class: "name" }, h("span", { title: t.trace_id }, t.root_name || "(no root yet)"), t.models.length ? h("span", { class: "chip" }, t.models.join(", ")) : null),
    h("td", { class: "service" }, t.root_service),
    h("td", { class: "num" }, fmt.duration(t.duration_ms)),
    h("td", { class: "num" }, fmt.int(t.span_count)),
    h("td", { class: "num" }, fmt.int(t.llm_calls)),
    h("td", { class: "num" }, fmt.int(t.tokens)),
    h("td", { class: "num" }, fmt.cost(t.cost_usd)),
    h("td", { class: "status" }, status),
  );
}

/** Up and down move between the rows' links. */
function arrows(e) {
  if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
  const links = [...e.currentTarget.querySelectorAll("a.rowlink")];
  const i = links.indexOf(document.activeElement);
  const next = links[Math.max(0, Math.min(links.length - 1, i + (e.key === "ArrowDown" ? 1 : -1)))];
  if (next) {
    e.preventDefault();
    next.focus();
  }
}
