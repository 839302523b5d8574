// One trace: a waterfall of its span tree (depth first by start time, bars
// placed by start and duration relative to the trace) and the selected
// span's details. Only the rows on screen exist in the page (a virtualized
// list, as Jaeger's), so a trace of thousands of spans scrolls smoothly.
// `#/trace/<id>?span=<span id>` names the selected span. Scores of the
// trace and of the selected span show in the header and the detail, with a
// form to add one (editors and admins); after a write the trace is re-read
// until the score is stored. Log records of a span (the API puts a
// trace's records on the spans they name) are marked on its row (a ≡ count,
// and a tick on its bar per record, at its time) and listed in its detail;
// records that name no span of the trace are listed in the header.

import { get } from "./api.js";
import { h, fact, notice, replace } from "./dom.js";
import { renderChat } from "./chat.js";
import { scoreChips, scoreTable, scoreForm, deleteScore, untilStored } from "./scores.js";
import { severityChip } from "./logs.js";
import * as fmt from "./format.js";

const ROW = 26; // px per row
const OVERSCAN = 12;
const KINDS = ["unspecified", "internal", "server", "client", "producer", "consumer"];

export function render(main, id, params) {
  main.replaceChildren(h("p", { class: "muted", "aria-busy": "true" }, "Loading trace…"));
  let cleanup = () => {};
  get(`/api/v1/traces/${encodeURIComponent(id)}`).then(
    (trace) => {
      cleanup = view(main, trace, params.span, id);
    },
    (e) => main.replaceChildren(h("h1", {}, "Trace"), notice("error", e.status === 404 ? "No trace with this id for your tenant." : `The trace did not load: ${e.message}`)),
  );
  return () => cleanup();
}

/** Depth-first rows of the tree, children by start time (as the API sends them). */
function flatten(roots) {
  const all = [];
  const walk = (node, depth, parent) => {
    const row = { node, depth, parent, index: all.length, descendants: 0 };
    all.push(row);
    for (const child of node.children) walk(child, depth + 1, row);
    row.descendants = all.length - row.index - 1;
  };
  for (const root of roots) walk(root, 0, null);
  return all;
}

/** Ids of every score of a trace answer (the trace's own and its spans'). */
function scoreIds(trace) {
  const ids = new Set((trace.scores || []).map((s) => s.id));
  const walk = (n) => {
    for (const s of n.scores || []) ids.add(s.id);
    n.children.forEach(walk);
  };
  trace.roots.forEach(walk);
  return ids;
}

function view(main, trace, selectedId, id) {
  const all = flatten(trace.roots);
  const starts = all.map((r) => fmt.ms(r.node.start_time));
  const t0 = Math.min(...starts);
  const t1 = Math.max(...all.map((r, i) => starts[i] + r.node.duration_ms));
  const total = Math.max(t1 - t0, 0.001);
  all.forEach((r, i) => (r.offset = starts[i] - t0));
  const collapsed = new Set();
  let visible = all;
  let selected = Math.max(0, all.findIndex((r) => r.node.span_id === selectedId));

  let alive = true;
  const traceScores = h("div", { class: "score-box" });
  const form = scoreForm({ trace_id: trace.trace_id }, (ids, status) => refresh((got) => ids.every((i) => got.has(i)), status));
  const addTraceScore = form ? h("details", { class: "add-score" }, h("summary", {}, "Add score to the trace"), form) : null;
  // The selected span's scores box (filled by drawScores).
  let spanScores = null;

  /** Re-reads the trace until `done(ids)` holds, then shows its scores. */
  async function refresh(done, status) {
    let result;
    try {
      result = await untilStored(() => get(`/api/v1/traces/${encodeURIComponent(id)}`), (t) => done(scoreIds(t)));
    } catch (e) {
      if (status) status.replaceChildren(notice("error", `The trace did not reload: ${e.message}`));
      return;
    }
    if (!alive) return;
    const fresh = new Map();
    const walk = (n) => {
      fresh.set(n.span_id, n.scores || []);
      n.children.forEach(walk);
    };
    result.answer.roots.forEach(walk);
    for (const r of all) r.node.scores = fresh.get(r.node.span_id) || [];
    trace.scores = result.answer.scores || [];
    drawScores();
    draw();
    if (status) status.replaceChildren(result.stored ? h("span", { class: "ok" }, "✓ Stored.") : notice("info", "Accepted, but not stored yet after 5 s: reload the trace in a moment."));
  }

  const remove = (s, button) => deleteScore(s, button, (gone) => refresh((got) => !got.has(gone)));

  function drawScores() {
    traceScores.replaceChildren(scoreChips(trace.scores, remove));
    if (!spanScores) return;
    spanScores.head.textContent = `Scores (${(spanScores.node.scores || []).length})`;
    spanScores.box.replaceChildren(scoreTable(spanScores.node.scores, remove));
  }

  /** The selected span's scores: the table and the form. */
  function spanScoresPart(node) {
    spanScores = { node, head: h("h3", {}), box: h("div", { class: "span-scores" }) };
    drawScores();
    const add = scoreForm({ trace_id: trace.trace_id, span_id: node.span_id }, (ids, status) => refresh((got) => ids.every((i) => got.has(i)), status));
    return h("section", { class: "scores-part", "aria-label": "Scores of the span" }, spanScores.head, spanScores.box, add);
  }

  const root = trace.roots[0];
  const errors = all.filter((r) => r.node.status_code === 2).length;
  const services = [...new Set(all.map((r) => r.node.service))];
  const traceLogs = trace.logs || [];
  const logCount = traceLogs.length + all.reduce((a, r) => a + (r.node.logs || []).length, 0);
  // The logs page over this trace's records, in a window around it.
  const logsHref = fmt.hashOf("logs", { trace_id: trace.trace_id, from: new Date(t0 - 3600e3).toISOString(), to: new Date(t1 + 3600e3).toISOString() });
  const summary = h(
    "div",
    { class: "trace-head" },
    h("h1", {}, root ? root.name : "Trace"),
    h(
      "dl",
      { class: "facts" },
      fact("Trace id", h("code", {}, trace.trace_id)),
      fact("Start", fmt.time(new Date(t0).toISOString())),
      fact("Duration", fmt.duration(total)),
      fact("Spans", fmt.int(trace.span_count)),
      fact("Services", services.length),
      fact("Cost", fmt.cost(trace.cost_usd)),
      fact("Errors", errors ? h("span", { class: "bad" }, `✕ ${errors}`) : "0"),
      logCount ? fact("Logs", h("a", { href: logsHref, class: "trace-logs-link", title: "Search the records of this trace" }, fmt.int(logCount))) : null,
    ),
    h("div", { class: "trace-scores" }, h("span", { class: "muted small" }, "Scores"), traceScores, addTraceScore),
    traceLogs.length
      ? h("details", { class: "trace-logs" }, h("summary", {}, traceLogs.length === 1 ? "1 log record of the trace names no span of it" : `${fmt.int(traceLogs.length)} log records of the trace name no span of it`), logList(traceLogs, t0, null))
      : null,
    trace.truncated ? notice("info", `This trace is longer than the API returns: the first ${fmt.int(trace.span_count)} spans by start time are shown.`) : null,
    h("p", { class: "legend" }, services.map((s) => h("span", { class: "svc" }, h("i", { style: null, class: "swatch", dataset: { colour: s } }), s))),
  );

  const ruler = h("div", { class: "ruler", "aria-hidden": "true" }, [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { class: "tick", dataset: { at: f } }, f ? fmt.duration(total * f) : "0")));
  const spacer = h("div", { class: "spacer" });
  const tree = h(
    "div",
    { class: "waterfall", role: "tree", tabindex: 0, "aria-label": "Spans of the trace, by start time" },
    spacer,
  );
  const detail = h("section", { class: "detail", "aria-label": "Selected span" });
  main.replaceChildren(summary, h("div", { class: "trace-body" }, h("div", { class: "timeline" }, h("div", { class: "ruler-row" }, h("span", { class: "ruler-name" }, "Service · span"), ruler), tree), detail));
  paintSwatches(main);
  placeTicks(ruler);

  function recompute() {
    visible = [];
    for (let i = 0; i < all.length; i++) {
      visible.push(all[i]);
      if (collapsed.has(all[i].index)) i += all[i].descendants;
    }
    spacer.style.height = `${visible.length * ROW}px`;
  }

  function draw() {
    const top = tree.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(visible.length, Math.ceil((top + tree.clientHeight) / ROW) + OVERSCAN);
    const rows = [];
    for (let i = first; i < last; i++) rows.push(rowEl(visible[i], i));
    spacer.replaceChildren(...rows);
  }

  function rowEl(r, position) {
    const n = r.node;
    const logs = n.logs || [];
    const worst = logs.reduce((a, l) => Math.max(a, l.severity_number || 0), 0);
    // A tick per record (at most 50) at its time on the trace's axis.
    const marks = logs.slice(0, 50).map((l) => {
      const at = Math.min(1, Math.max(0, (fmt.ms(l.time) - t0) / total));
      const mark = h("span", { class: `log-mark sev-${fmt.severityClass(l.severity_number)}`, title: `${fmt.severity(l.severity_number, l.severity_text)} ${l.event_name || ""} ${fmt.time(l.time)}` });
      mark.style.left = `${at * 100}%`;
      return mark;
    });
    const isSelected = r.index === selected;
    const hasChildren = r.descendants > 0;
    const open = !collapsed.has(r.index);
    const el = h(
      "div",
      {
        class: `span-row${isSelected ? " selected" : ""}${n.status_code === 2 ? " error" : ""}`,
        role: "treeitem",
        "aria-level": r.depth + 1,
        "aria-selected": isSelected ? "true" : "false",
        "aria-expanded": hasChildren ? String(open) : null,
        id: `span-${n.span_id}`,
        dataset: { spanId: n.span_id },
        onclick: () => select(r.index),
      },
      h(
        "div",
        { class: "span-name" },
        h("span", { class: "indent", dataset: { depth: r.depth } }),
        hasChildren
          ? h("button", { type: "button", class: "toggle", tabindex: -1, "aria-label": open ? "Collapse" : "Expand", onclick: (e) => (e.stopPropagation(), toggle(r.index)) }, open ? "▾" : "▸")
          : h("span", { class: "toggle" }),
        h("i", { class: "swatch", dataset: { colour: n.service } }),
        h("span", { class: "svc-name" }, n.service),
        " ",
        h("span", { class: "op" }, n.name),
        n.status_code === 2 ? h("span", { class: "bad", title: "error" }, " ✕") : null,
        n.llm ? h("span", { class: "chip" }, n.llm.model) : null,
        n.scores && n.scores.length ? h("span", { class: "chip scored", title: n.scores.map((x) => x.name).join(", ") }, `★ ${n.scores.length}`) : null,
        logs.length ? h("span", { class: `chip logs${worst >= 17 ? " bad-logs" : ""}`, title: `${logs.length} log record${logs.length === 1 ? "" : "s"}${worst >= 17 ? ", with errors" : ""}` }, `≡ ${logs.length}`) : null,
      ),
      h("div", { class: "span-bar" }, h("span", { class: "bar", dataset: { left: r.offset / total, width: n.duration_ms / total, colour: n.service } }), h("span", { class: "bar-label" }, fmt.duration(n.duration_ms)), marks),
    );
    el.style.top = `${position * ROW}px`;
    const indent = el.querySelector(".indent");
    indent.style.width = `${r.depth * 14}px`;
    const bar = el.querySelector(".bar");
    const left = (r.offset / total) * 100;
    bar.style.left = `${left}%`;
    bar.style.width = `max(2px, ${(n.duration_ms / total) * 100}%)`;
    bar.style.background = fmt.colour(n.service);
    // The duration to the right of the bar (inside it near the end of the trace).
    el.querySelector(".bar-label").style.left = `min(${left + (n.duration_ms / total) * 100}%, 88%)`;
    paintSwatches(el);
    return el;
  }

  function toggle(index) {
    if (collapsed.has(index)) collapsed.delete(index);
    else collapsed.add(index);
    recompute();
    draw();
  }

  function select(index, fromUrl = false) {
    selected = index;
    const n = all[index].node;
    if (!fromUrl) history.replaceState(null, "", fmt.hashOf(`trace/${trace.trace_id}`, { span: n.span_id }));
    // Expand the ancestors so that the selected span is on screen.
    for (let p = all[index].parent; p; p = p.parent) collapsed.delete(p.index);
    recompute();
    const pos = visible.findIndex((r) => r.index === index);
    if (pos * ROW < tree.scrollTop) tree.scrollTop = pos * ROW;
    else if ((pos + 1) * ROW > tree.scrollTop + tree.clientHeight) tree.scrollTop = (pos + 1) * ROW - tree.clientHeight;
    draw();
    tree.setAttribute("aria-activedescendant", `span-${n.span_id}`);
    renderDetail(detail, all[index], total, t0, spanScoresPart(n));
  }

  tree.addEventListener("scroll", () => requestAnimationFrame(draw), { passive: true });
  tree.addEventListener("keydown", (e) => {
    const pos = visible.findIndex((r) => r.index === selected);
    const r = visible[pos];
    let next = null;
    if (e.key === "ArrowDown") next = visible[Math.min(visible.length - 1, pos + 1)];
    else if (e.key === "ArrowUp") next = visible[Math.max(0, pos - 1)];
    else if (e.key === "Home") next = visible[0];
    else if (e.key === "End") next = visible[visible.length - 1];
    else if (e.key === "PageDown") next = visible[Math.min(visible.length - 1, pos + Math.floor(tree.clientHeight / ROW))];
    else if (e.key === "PageUp") next = visible[Math.max(0, pos - Math.floor(tree.clientHeight / ROW))];
    else if (e.key === "ArrowRight" && r.descendants && collapsed.has(r.index)) return e.preventDefault(), toggle(r.index);
    else if (e.key === "ArrowLeft" && r.descendants && !collapsed.has(r.index)) return e.preventDefault(), toggle(r.index);
    else if (e.key === "ArrowLeft" && r.parent) next = r.parent;
    else return;
    e.preventDefault();
    if (next) select(next.index);
  });
  const onResize = () => draw();
  window.addEventListener("resize", onResize);
  recompute();
  drawScores();
  select(selected, !selectedId);
  fmt.rendered("trace");
  return () => {
    alive = false;
    window.removeEventListener("resize", onResize);
  };
}

function paintSwatches(el) {
  for (const s of el.querySelectorAll(".swatch")) s.style.background = fmt.colour(s.dataset.colour);
}

function placeTicks(ruler) {
  for (const t of ruler.querySelectorAll(".tick")) {
    const at = Number(t.dataset.at);
    t.style.left = `${at * 100}%`;
    if (at === 1) t.classList.add("end");
  }
}

function renderDetail(box, r, total, t0, scores) {
  const n = r.node;
  const sections = [
    h("h2", {}, n.name),
    h(
      "dl",
      { class: "facts" },
      fact("Service", n.service),
      fact("Span id", h("code", {}, n.span_id)),
      fact("Parent", n.parent_span_id ? h("code", {}, n.parent_span_id) : "(root)"),
      fact("Kind", KINDS[n.kind] || String(n.kind)),
      fact("Start", `${fmt.time(n.start_time)} (+${fmt.duration(r.offset)})`),
      fact("Duration", `${fmt.duration(n.duration_ms)} (${fmt.percent(n.duration_ms / total)} of the trace)`),
      fact("Status", n.status_code === 2 ? h("span", { class: "bad" }, `✕ error${n.status_message ? `: ${n.status_message}` : ""}`) : n.status_code === 1 ? "ok" : "unset"),
    ),
  ];
  if (n.llm) sections.push(llm(n.llm));
  sections.push(scores);
  const logs = n.logs || [];
  if (logs.length) sections.push(h("section", { class: "span-logs", "aria-label": "Log records of the span" }, h("h3", {}, `Logs (${fmt.int(logs.length)})`), logList(logs, t0, n.service)));
  sections.push(kv("Attributes", n.attributes));
  if (Array.isArray(n.events) && n.events.length) {
    sections.push(
      h("h3", {}, `Events (${n.events.length})`),
      h(
        "ol",
        { class: "events" },
        n.events.map((e) => h("li", {}, h("strong", {}, e.name), e.time_unix_nano ? h("span", { class: "muted" }, ` ${fmt.time(new Date(Number(BigInt(e.time_unix_nano) / 1000000n)).toISOString())}`) : null, kvTable(e.attributes))),
      ),
    );
  }
  if (Array.isArray(n.links) && n.links.length) sections.push(h("h3", {}, "Links"), h("pre", { class: "wrap" }, JSON.stringify(n.links, null, 2)));
  sections.push(kv("Resource", n.resource));
  replace(box, sections);
}

/** Log records, oldest first: time and offset in the trace, severity, event name, body and attributes. */
function logList(records, t0, service) {
  return h(
    "ol",
    { class: "logs" },
    records.map((l) => {
      const body = fmt.bodyText(l.body);
      const attributes = l.attributes && typeof l.attributes === "object" && Object.keys(l.attributes).length ? l.attributes : null;
      return h(
        "li",
        { class: "log-record", dataset: { severity: fmt.severityClass(l.severity_number) } },
        h(
          "div",
          { class: "log-head" },
          h("span", { class: "log-time" }, fmt.time(l.time)),
          h("span", { class: "muted" }, ` (${offset(fmt.ms(l.time) - t0)}) `),
          severityChip(l),
          l.event_name ? h("code", { class: "event-name" }, l.event_name) : null,
          l.service && l.service !== service ? h("span", { class: "chip" }, l.service) : null,
        ),
        body ? h("pre", { class: "wrap log-body" }, clip(body, 4000)) : null,
        attributes ? kvTable(attributes) : null,
      );
    }),
  );
}

/** A time relative to the trace's start: +12 ms, or −3 ms before it. */
function offset(d) {
  return d < 0 ? `−${fmt.duration(-d)}` : `+${fmt.duration(d)}`;
}

/** `text` cut to `n` characters (a body may be tens of kilobytes). */
function clip(text, n) {
  return text.length > n ? `${text.slice(0, n)}… (${fmt.int(text.length)} characters)` : text;
}

function llm(c) {
  const tokens = [
    ["Input", c.input_tokens],
    ["Cached (read)", c.cache_read_tokens],
    ["Cache write", c.cache_write_tokens],
    ["Output", c.output_tokens],
    ["Reasoning", c.reasoning_tokens],
  ];
  return h(
    "section",
    { class: "llm", "aria-label": "Model call" },
    h("h3", {}, "Model call"),
    h(
      "dl",
      { class: "facts" },
      fact("Model", h("span", { class: "model" }, c.model)),
      fact("Provider", c.provider),
      fact("Operation", c.operation),
      fact("Cost", h("span", { class: "cost" }, c.cost_usd === null ? "not priced" : fmt.cost(c.cost_usd))),
      fact("Time to first token", c.time_to_first_token_ms === null ? "–" : fmt.duration(c.time_to_first_token_ms)),
      fact("Finish", (c.finish_reasons || []).join(", ") || "–"),
    ),
    h("table", { class: "tokens" }, h("caption", {}, "Tokens"), h("tr", {}, tokens.map(([k]) => h("th", { scope: "col" }, k))), h("tr", {}, tokens.map(([k, v]) => h("td", { class: "num", dataset: { kind: k } }, fmt.int(v))))),
    c.messages && (c.messages.input.length || c.messages.output.length) ? renderChat(c.messages) : h("p", { class: "muted" }, "No content captured for this call."),
  );
}

function kv(title, object) {
  const n = object && typeof object === "object" ? Object.keys(object).length : 0;
  return [h("h3", {}, `${title} (${n})`), kvTable(object)];
}

function kvTable(object) {
  if (!object || typeof object !== "object" || !Object.keys(object).length) return h("p", { class: "muted" }, "none");
  return h(
    "table",
    { class: "kv" },
    Object.keys(object)
      .sort()
      .map((k) => {
        const v = object[k];
        return h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, typeof v === "string" ? v : JSON.stringify(v)));
      }),
  );
}
