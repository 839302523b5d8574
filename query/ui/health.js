// Pipeline health (admins): each service up or down, ingest and refusal
// rates, Kafka readiness, rows written, lag per sink and partition, the
// oldest unwritten message and dead letters. Read from GET /api/v1/pipeline
// (the services' own metrics) every 5 seconds; a rate is the difference of
// two reads.

import { get } from "./api.js";
import { h, fact, notice } from "./dom.js";
import * as fmt from "./format.js";

const EVERY_MS = 5000;

export function render(main) {
  const body = h("div", { class: "health", "aria-live": "polite" }, h("p", { class: "muted" }, "Reading the services' metrics…"));
  main.replaceChildren(h("h1", {}, "Pipeline health"), body);
  let previous = null;
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      const now = await get("/api/v1/pipeline");
      if (stopped) return;
      draw(body, now, previous);
      previous = now;
      fmt.rendered("health");
    } catch (e) {
      if (stopped) return;
      body.replaceChildren(notice("error", `The pipeline's health did not load: ${e.message}`));
    }
    if (!stopped) timer = setTimeout(tick, EVERY_MS);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Sum of a family's samples whose labels match `where`. */
function sum(service, name, where = {}) {
  return service.samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

function rate(service, prevService, dt, name, where) {
  if (!prevService || !prevService.up || dt <= 0) return null;
  return Math.max(0, (sum(service, name, where) - sum(prevService, name, where)) / dt);
}

function draw(body, now, previous) {
  if (!now.services.length) {
    body.replaceChildren(
      notice("info", "No service is configured: set PIPELINE_METRICS on observatory-api to the collector's and sinks' metrics addresses (name=address pairs; docs/ui.md)."),
    );
    return;
  }
  const dt = previous ? (Date.parse(now.time) - Date.parse(previous.time)) / 1000 : 0;
  const cards = now.services.map((s) => card(s, previous && previous.services.find((p) => p.name === s.name), dt));
  body.replaceChildren(
    h("p", { class: "muted small" }, `Read at ${fmt.time(now.time)}; rates over the last ${dt ? `${dt.toFixed(1)} s` : "read (after the next read)"}.`),
    h("div", { class: "cards" }, cards),
  );
}

function perSecond(x) {
  return x === null ? "…" : `${fmt.compact(x)}/s`;
}

function card(s, prev, dt) {
  const head = h("h2", {}, s.name, " ", s.up ? h("span", { class: "ok" }, "✓ up") : h("span", { class: "bad" }, "✕ down"));
  if (!s.up) return h("section", { class: "card down" }, head, h("p", {}, s.error || "no answer"));
  const facts = [];
  const has = (name) => s.samples.some((x) => x.name === name);
  if (has("observatory_collector_accepted_items_total") || has("observatory_collector_kafka_ready")) {
    const ready = sum(s, "observatory_collector_kafka_ready");
    facts.push(
      fact("Accepted spans", perSecond(rate(s, prev, dt, "observatory_collector_accepted_items_total", { signal: "traces" }))),
      fact("Accepted items (all signals)", fmt.int(sum(s, "observatory_collector_accepted_items_total"))),
      fact("Refused requests", `${fmt.int(sum(s, "observatory_collector_refused_requests_total"))} (${perSecond(rate(s, prev, dt, "observatory_collector_refused_requests_total"))})`),
      fact("Bytes waiting for Kafka", fmt.compact(sum(s, "observatory_collector_inflight_bytes"))),
      fact("Kafka", ready >= 1 ? h("span", { class: "ok" }, "✓ ready") : h("span", { class: "bad" }, "✕ not ready")),
    );
    const reasons = new Map();
    for (const x of s.samples.filter((x) => x.name === "observatory_collector_refused_items_total")) {
      reasons.set(x.labels.reason, (reasons.get(x.labels.reason) || 0) + x.value);
    }
    if (reasons.size) facts.push(fact("Refused items by reason", [...reasons].map(([r, n]) => `${r} ${fmt.int(n)}`).join(", ")));
  }
  if (has("observatory_consumer_messages_total") || has("observatory_consumer_lag_messages")) {
    const dlq = sum(s, "observatory_consumer_dlq_messages_total");
    const oldest = Math.max(0, ...s.samples.filter((x) => x.name === "observatory_consumer_oldest_unwritten_age_seconds").map((x) => x.value));
    facts.push(
      fact("Messages", perSecond(rate(s, prev, dt, "observatory_consumer_messages_total"))),
      fact("Rows written", perSecond(rate(s, prev, dt, "observatory_consumer_rows_written_total"))),
      fact("Dead letters", dlq ? h("span", { class: "warn" }, `! ${fmt.int(dlq)}`) : "0"),
      fact("Oldest unwritten message", oldest ? `${oldest.toFixed(1)} s` : "none pending"),
    );
  }
  const lag = s.samples.filter((x) => x.name === "observatory_consumer_lag_messages");
  const lagTable = lag.length
    ? h(
        "table",
        { class: "lag" },
        h("caption", {}, `Lag: ${fmt.int(lag.reduce((a, x) => a + x.value, 0))} messages`),
        h("thead", {}, h("tr", {}, ["Group", "Topic", "Partition", "Lag"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          lag
            .slice()
            .sort((a, b) => a.labels.topic.localeCompare(b.labels.topic) || Number(a.labels.partition) - Number(b.labels.partition))
            .map((x) => h("tr", {}, h("td", {}, x.labels.group), h("td", {}, x.labels.topic), h("td", { class: "num" }, x.labels.partition), h("td", { class: "num" }, fmt.int(x.value)))),
        ),
      )
    : null;
  return h("section", { class: "card" }, head, h("dl", { class: "facts" }, facts), lagTable);
}
