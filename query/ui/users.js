// Users: the end users of the LLM application seen in a window, one row
// each (calls, errors, tokens, cost, latency, sessions, mean scores), from
// GET /api/v1/users, sorted and paged by cursor. A row opens `#/user/<id>`.

import { get } from "./api.js";
import { h, field, notice } from "./dom.js";
import { means } from "./scores.js";
import * as fmt from "./format.js";

const SORTS = [
  ["last_seen", "Last seen"],
  ["cost", "Cost"],
  ["calls", "Model calls"],
];

export function render(main, _arg, params) {
  const range = h("select", { name: "range" }, fmt.RANGES.map(([k, label]) => h("option", { value: k, selected: (params.range || "30d") === k }, label)));
  const sort = h("select", { name: "sort" }, SORTS.map(([k, label]) => h("option", { value: k, selected: (params.sort || "last_seen") === k }, label)));
  const form = h("form", { class: "filters", "aria-label": "Users window and order" }, field("Seen in", range), field("Sort by", sort));
  form.addEventListener("change", () => {
    const data = new FormData(form);
    location.hash = fmt.hashOf("users", { range: data.get("range"), sort: data.get("sort") });
  });
  const list = h("div", { class: "list", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading users…"));
  main.replaceChildren(h("h1", {}, "Users"), form, list);
  load(list, params);
}

async function load(box, params) {
  const { from, to } = fmt.timeWindow(params, "30d");
  const query = { from, to, sort: params.sort, limit: params.limit || 50, cursor: params.cursor };
  let page;
  try {
    page = await get("/api/v1/users", query);
  } catch (e) {
    box.setAttribute("aria-busy", "false");
    box.replaceChildren(notice("error", `The users did not load: ${e.message}`));
    return;
  }
  box.setAttribute("aria-busy", "false");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  if (params.cursor) pager.append(h("a", { href: fmt.hashOf("users", { ...params, cursor: null }), class: "button secondary" }, "First page"));
  if (page.next_cursor) {
    const next = { ...params, from, to, cursor: page.next_cursor };
    delete next.range;
    pager.append(h("a", { href: fmt.hashOf("users", next), class: "button", rel: "next" }, "Next page"));
  }
  box.replaceChildren(page.users.length ? table(page.users, from, to) : h("p", { class: "empty" }, "No user was seen in this window."), pager);
  fmt.rendered("users");
}

function table(users, from, to) {
  const head = ["User", "Last seen", "Calls", "Errors", "Tokens", "Cost", "Mean latency", "p95 latency", "Sessions", "Mean scores"];
  const text = new Set(["User", "Last seen", "Mean scores"]);
  return h(
    "table",
    { class: "users" },
    h("caption", { class: "muted" }, `Seen ${fmt.time(from)} – ${fmt.time(to)}; totals are over everything stored for each user`),
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col", class: text.has(c) ? null : "num" }, c)))),
    h(
      "tbody",
      {},
      users.map((u) =>
        h(
          "tr",
          { dataset: { userId: u.user_id } },
          h("td", { class: "name" }, h("a", { href: `#/user/${encodeURIComponent(u.user_id)}`, class: "rowlink" }, u.user_id)),
          h("td", { class: "start" }, fmt.time(u.last_seen)),
          h("td", { class: "num" }, fmt.int(u.llm_calls)),
          h("td", { class: "num" }, u.errors ? h("span", { class: "bad" }, `${fmt.int(u.errors)} (${fmt.percent(u.error_rate)})`) : "0"),
          h("td", { class: "num" }, fmt.int(u.total_tokens)),
          h("td", { class: "num" }, fmt.cost(u.cost_usd)),
          h("td", { class: "num" }, fmt.duration(u.mean_latency_ms)),
          h("td", { class: "num" }, fmt.duration(u.p95_latency_ms)),
          h("td", { class: "num" }, fmt.int(u.sessions)),
          h("td", { class: "scores-cell" }, means(u.scores)),
        ),
      ),
    ),
  );
}
