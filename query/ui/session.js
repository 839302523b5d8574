// One session as a transcript: its turns (traces) in order, each with its
// cost, latency, tokens and scores and a link to the trace, and each model
// call's messages as a chat. Messages a call repeats from the previous
// call (the conversation so far) are folded, so the transcript reads as
// the conversation went. From GET /api/v1/sessions/{id}.

import { get } from "./api.js";
import { h, fact, notice } from "./dom.js";
import { renderChat } from "./chat.js";
import { means, scoreChips, scoreForm, deleteScore, untilStored } from "./scores.js";
import * as fmt from "./format.js";

export function render(main, id) {
  main.replaceChildren(h("p", { class: "muted", "aria-busy": "true" }, "Loading session…"));
  const url = `/api/v1/sessions/${encodeURIComponent(id)}`;
  let alive = true;
  const show = (s) => alive && view(main, s, url, () => alive);
  get(url).then(show, (e) => alive && main.replaceChildren(h("h1", {}, "Session"), notice("error", e.status === 404 ? "No session with this id for your tenant." : `The session did not load: ${e.message}`)));
  return () => (alive = false);
}

function userLinks(users) {
  if (!users.length) return h("span", { class: "muted" }, "–");
  return users.map((u, i) => [i ? ", " : "", h("a", { href: `#/user/${encodeURIComponent(u)}` }, u)]);
}

function view(main, s, url, alive) {
  const own = h("div", { class: "score-box" });
  // Session scores can be cached by the API for a few seconds: wait longer.
  const reread = (done, status) =>
    untilStored(() => get(url), (t) => done(new Set(t.session_scores.map((x) => x.id))), 12000).then(({ answer, stored }) => {
      if (!alive()) return;
      s.session_scores = answer.session_scores;
      drawOwn();
      if (status) status.replaceChildren(stored ? h("span", { class: "ok" }, "✓ Stored.") : notice("info", "Accepted, but not shown yet: reload in a moment."));
    });
  const remove = (x, button) => deleteScore(x, button, (gone) => reread((ids) => !ids.has(gone)));
  const drawOwn = () => own.replaceChildren(scoreChips(s.session_scores, remove));
  drawOwn();
  const form = scoreForm({ session_id: s.session_id }, (ids, status) => reread((got) => ids.every((i) => got.has(i)), status));
  main.replaceChildren(
    h(
      "div",
      { class: "trace-head session-head" },
      h("h1", {}, "Session ", h("code", {}, s.session_id)),
      h(
        "dl",
        { class: "facts" },
        fact("First activity", fmt.time(s.first_time)),
        fact("Last activity", fmt.time(s.last_time)),
        fact("Duration", fmt.duration(s.duration_ms)),
        fact("Turns", fmt.int(s.traces)),
        fact("Model calls", fmt.int(s.llm_calls)),
        fact("Tokens", `${fmt.int(s.total_tokens)} (${fmt.compact(s.input_tokens)} in · ${fmt.compact(s.output_tokens)} out)`),
        fact("Cost", h("span", { class: "cost" }, fmt.cost(s.cost_usd))),
        fact("Errors", s.errors ? h("span", { class: "bad" }, `✕ ${fmt.int(s.errors)}`) : "0"),
        fact("Users", userLinks(s.users)),
        fact("Services", s.services.join(", ") || "–"),
        fact("Models", s.models.join(", ") || "–"),
        fact("Mean scores", means(s.scores)),
      ),
      h("div", { class: "trace-scores" }, h("span", { class: "muted small" }, "Session scores"), own, form ? h("details", { class: "add-score" }, h("summary", {}, "Add score to the session"), form) : null),
      s.truncated ? notice("info", `This session has more turns than the API returns: the first ${fmt.int(s.turns.length)} are shown.`) : null,
    ),
    transcript(s.turns),
  );
  fmt.rendered("session");
}

/** A message's identity, to find the ones a call repeats. */
const keyOf = (m) => JSON.stringify([m.role, m.content, m.tool_calls, m.tool_call_id]);

function transcript(turns) {
  if (!turns.length) return h("p", { class: "empty" }, "This session has no turns stored.");
  let previous = [];
  return h(
    "ol",
    { class: "transcript", "aria-label": "Turns, oldest first" },
    turns.map((t, i) => {
      const calls = t.calls.map((c) => {
        const messages = c.messages || { input: [], output: [] };
        // The longest start of this call's input that is the previous call's conversation.
        let same = 0;
        while (same < messages.input.length && same < previous.length && keyOf(messages.input[same]) === previous[same]) same++;
        if (messages.input.length || messages.output.length) previous = [...messages.input, ...messages.output].map(keyOf);
        return call(c, messages, same);
      });
      return h(
        "li",
        { class: `turn${t.has_error ? " error" : ""}`, dataset: { traceId: t.trace_id } },
        h(
          "header",
          { class: "turn-head" },
          h("strong", {}, `Turn ${i + 1}`),
          " ",
          h("span", { class: "op" }, t.root_name || "(no root yet)"),
          h("span", { class: "muted" }, ` · ${fmt.time(t.start_time)}`),
          t.user_id ? [h("span", { class: "muted" }, " · "), h("a", { href: `#/user/${encodeURIComponent(t.user_id)}` }, t.user_id)] : null,
          h("a", { href: `#/trace/${t.trace_id}`, class: "open-trace" }, "Open trace →"),
        ),
        h(
          "p",
          { class: "turn-facts" },
          h("span", { class: "cost" }, fmt.cost(t.cost_usd)),
          ` · ${fmt.duration(t.duration_ms)} · ${fmt.int(t.total_tokens)} tokens · ${t.calls.length} model call${t.calls.length === 1 ? "" : "s"}`,
          t.has_error ? h("span", { class: "bad" }, " · ✕ error") : null,
        ),
        t.scores.length ? h("div", { class: "trace-scores" }, h("span", { class: "muted small" }, "Scores"), scoreChips(t.scores)) : null,
        calls,
      );
    }),
  );
}

function call(c, messages, repeated) {
  const tokens = `${fmt.int(c.input_tokens)} in · ${fmt.int(c.output_tokens)} out`;
  const ttft = c.time_to_first_token_ms === null || c.time_to_first_token_ms === undefined ? "" : ` · first token ${fmt.duration(c.time_to_first_token_ms)}`;
  const earlier = messages.input.slice(0, repeated);
  const fresh = { input: messages.input.slice(repeated), output: messages.output };
  return h(
    "section",
    { class: `call${c.is_error ? " error" : ""}`, dataset: { spanId: c.span_id }, "aria-label": `Model call ${c.model}` },
    h(
      "p",
      { class: "call-head" },
      h("span", { class: "model chip" }, c.model),
      h("span", { class: "muted" }, ` ${c.operation} · ${c.provider} · `),
      tokens,
      " · ",
      h("span", { class: "cost" }, c.cost_usd === null ? "not priced" : fmt.cost(c.cost_usd)),
      ` · ${fmt.duration(c.duration_ms)}${ttft}`,
      c.is_error ? h("span", { class: "bad" }, " · ✕ error") : null,
    ),
    c.scores && c.scores.length ? scoreChips(c.scores) : null,
    earlier.length ? h("details", { class: "earlier" }, h("summary", { class: "muted small" }, `${earlier.length} earlier message${earlier.length === 1 ? "" : "s"} of the conversation`), renderChat({ input: earlier, output: [] })) : null,
    fresh.input.length || fresh.output.length ? renderChat(fresh) : earlier.length ? null : h("p", { class: "muted small" }, "No content captured for this call."),
  );
}
