// Log records: `GET /api/v1/logs` with its filters (time, least severity,
// service, trace id, event name, attribute conditions `key=value`, text in
// the body), newest first in cursor pages. The whole state is in the URL
// (`#/logs?...`); a record's trace id opens the trace at its span.

import { get } from "./api.js";
import { h, field, notice, timeRange, takeTimeRange } from "./dom.js";
import * as fmt from "./format.js";

const SEVERITIES = [
  ["", "Any"],
  ["trace", "Trace and up"],
  ["debug", "Debug and up"],
  ["info", "Info and up"],
  ["warn", "Warn and up"],
  ["error", "Error and up"],
  ["fatal", "Fatal"],
];

const TEXT_FILTERS = [
  ["service", "Service"],
  ["trace_id", "Trace id", "32 hex digits"],
  ["event_name", "Event name", "gen_ai.choice"],
];

/** A record's severity as a chip: its text and its range, by word, not colour alone. */
export function severityChip(record) {
  const cls = fmt.severityClass(record.severity_number);
  return h("span", { class: `chip sev sev-${cls}`, title: `severity ${record.severity_number || 0}` }, fmt.severity(record.severity_number, record.severity_text));
}

export function render(main, _arg, params) {
  const list = h("div", { class: "list", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading log records…"));
  main.replaceChildren(h("h1", {}, "Logs"), filters(params), list);
  load(list, params);
}

function filters(params) {
  const time = timeRange(params);
  const severity = h(
    "select",
    { name: "severity" },
    SEVERITIES.map(([k, label]) => h("option", { value: k, selected: (params.severity || "").toLowerCase() === k }, label)),
  );
  const inputs = TEXT_FILTERS.map(([name, label, placeholder]) => field(label, h("input", { name, value: params[name] || "", placeholder: placeholder || "", autocomplete: "off" })));
  const q = h("input", { type: "search", name: "q", value: params.q || "", placeholder: "words in the body" });
  const attrs = h("textarea", { name: "attr", rows: 2, placeholder: "key=value, one per line (http.route=/search)" });
  attrs.value = (params.attr || []).join("\n");
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Log filters" },
    ...time,
    field("Severity", severity),
    inputs,
    field("Text", q),
    field("Attributes", attrs),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search"), h("a", { href: "#/logs", class: "button secondary" }, "Clear")),
  );
  const submit = () => {
    const next = {};
    const data = new FormData(form);
    for (const [k, v] of data) {
      if (k === "attr") next.attr = String(v).split("\n").map((s) => s.trim()).filter(Boolean);
      else if (takeTimeRange(data, k, v, next)) continue;
      else if (String(v).trim()) next[k] = String(v).trim();
    }
    location.hash = fmt.hashOf("logs", next);
  };
  form.addEventListener("submit", (e) => (e.preventDefault(), submit()));
  severity.addEventListener("change", submit);
  return form;
}

async function load(box, params) {
  const { from, to } = fmt.timeWindow(params);
  const query = { ...params, from, to, limit: params.limit || 100 };
  delete query.range;
  let page;
  try {
    page = await get("/api/v1/logs", query);
  } catch (e) {
    box.setAttribute("aria-busy", "false");
    const where = e.problem && e.problem.parameter ? ` (${e.problem.parameter})` : "";
    box.replaceChildren(notice("error", `The search failed: ${e.message}${where}`));
    return;
  }
  box.setAttribute("aria-busy", "false");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  if (params.cursor) pager.append(h("a", { href: fmt.hashOf("logs", { ...params, cursor: null }), class: "button secondary" }, "First page"));
  if (page.next_cursor) {
    // Pin the window, so that the next page continues this one.
    const next = { ...params, from, to, cursor: page.next_cursor };
    delete next.range;
    pager.append(h("a", { href: fmt.hashOf("logs", next), class: "button", rel: "next" }, "Next page"));
  }
  const head = ["Time", "Severity", "Service", "Event", "Body and attributes", "Trace"];
  box.replaceChildren(
    page.records.length
      ? h(
          "table",
          { class: "logs" },
          h("caption", { class: "muted" }, `${fmt.time(from)} – ${fmt.time(to)}, newest first`),
          h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, page.records.map(row)),
        )
      : h("p", { class: "empty" }, "No log record matches in this window."),
    pager,
  );
  fmt.rendered("logs");
}

function row(r) {
  const body = fmt.bodyText(r.body);
  const attributes = r.attributes && typeof r.attributes === "object" ? Object.entries(r.attributes) : [];
  const trace = r.trace_id
    ? h(
        "a",
        { href: fmt.hashOf(`trace/${r.trace_id}`, { span: r.span_id }), class: "trace-link", title: `Open trace ${r.trace_id}${r.span_id ? ` at span ${r.span_id}` : ""}` },
        h("code", {}, `${r.trace_id.slice(0, 12)}…`),
      )
    : h("span", { class: "muted" }, "–");
  return h(
    "tr",
    { dataset: { traceId: r.trace_id || "", severity: fmt.severityClass(r.severity_number) } },
    h("td", { class: "start" }, fmt.time(r.time)),
    h("td", {}, severityChip(r)),
    h("td", { class: "service" }, r.service),
    h("td", { class: "event" }, r.event_name ? h("code", {}, r.event_name) : h("span", { class: "muted" }, "–"), r.scope_name ? h("div", { class: "muted small" }, r.scope_name) : null),
    h(
      "td",
      { class: "body" },
      body ? h("div", { class: "log-body" }, body.length > 2000 ? `${body.slice(0, 2000)}… (${fmt.int(body.length)} characters)` : body) : h("span", { class: "muted" }, "(no body)"),
      attributes.length
        ? h(
            "ul",
            { class: "attrs" },
            attributes.map(([k, v]) => h("li", {}, h("span", { class: "muted" }, `${k}=`), typeof v === "string" ? v : JSON.stringify(v))),
          )
        : null,
    ),
    h("td", { class: "trace" }, trace),
  );
}
