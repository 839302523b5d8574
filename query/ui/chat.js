// A model call's messages as a chat: system, user, assistant, tool calls and
// tool results, each as plain text.

import { h } from "./dom.js";

export function renderChat(messages) {
  return h(
    "div",
    { class: "chat", "aria-label": "Messages" },
    messages.input.map((m) => bubble(m, false)),
    messages.output.map((m) => bubble(m, true)),
  );
}

function bubble(m, output) {
  const role = m.role || (output ? "assistant" : "user");
  return h(
    "article",
    { class: `msg role-${role.replace(/[^a-z]/g, "")}${output ? " output" : ""}` },
    h("header", {}, h("strong", {}, role), output ? h("span", { class: "muted" }, " · response") : null, m.tool_call_id ? h("span", { class: "muted" }, ` · result of ${m.tool_call_id}`) : null, m.finish_reason ? h("span", { class: "muted" }, ` · ${m.finish_reason}`) : null),
    m.content ? h("pre", { class: "wrap" }, m.content) : null,
    (m.tool_calls || []).map((c) => h("div", { class: "tool-call" }, h("span", { class: "muted" }, "calls "), h("code", {}, c.name), c.id ? h("span", { class: "muted" }, ` (${c.id})`) : null, h("pre", { class: "wrap" }, c.arguments))),
  );
}
