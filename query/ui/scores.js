// Scores on traces, spans and sessions: a list of them, a small form to add
// one by hand (an annotation) and a delete button, both for editors and
// admins only (the API refuses viewers). A write is answered 202 once the
// broker has it and reaches the database a second or two later, so the
// caller re-reads until it shows (`untilStored`).

import { request, user } from "./api.js";
import { h, notice } from "./dom.js";
import * as fmt from "./format.js";

/** Whether the signed-in user may add and delete scores. */
export function canWrite() {
  const claims = user();
  return !!claims && (claims.role === "editor" || claims.role === "admin");
}

/** A score's value as it reads: a number, true/false, or its label. */
export function valueOf(s) {
  if (s.data_type === "numeric" && s.value !== null) return fmt.score(s.value);
  if (s.label !== null && s.label !== undefined) return s.label;
  return fmt.score(s.value);
}

/**
 * The scores as a table: name, value, source, author and time, comment, and
 * a delete button when `onDelete` is given (editors and admins).
 */
export function scoreTable(scores, onDelete) {
  if (!scores || !scores.length) return h("p", { class: "muted small" }, "No scores yet.");
  const del = onDelete && canWrite();
  return h(
    "table",
    { class: "scores" },
    h("thead", {}, h("tr", {}, ["Name", "Value", "From", "Comment", del ? "" : null].filter((c) => c !== null).map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      scores.map((s) =>
        h(
          "tr",
          { dataset: { scoreId: s.id, scoreName: s.name } },
          h("th", { scope: "row" }, s.name),
          h("td", { class: `value ${s.data_type}` }, valueOf(s)),
          h("td", { class: "from" }, h("span", { class: `chip source-${s.source}` }, s.source), ` ${s.author || ""}`, h("div", { class: "muted small" }, fmt.time(s.time))),
          h("td", { class: "comment" }, s.comment ? clip(s.comment, 2000) : ""),
          del ? h("td", {}, h("button", { type: "button", class: "link-danger", title: `Delete the score ${s.name}`, onclick: (e) => onDelete(s, e.currentTarget) }, "Delete")) : null,
        ),
      ),
    ),
  );
}

/** `text` cut to `n` characters (comments may be megabytes). */
function clip(text, n) {
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

/** The scores as one line each, for a header: name, value, source, author, time, comment. */
export function scoreChips(scores, onDelete) {
  if (!scores || !scores.length) return h("span", { class: "muted small" }, "none yet");
  const del = onDelete && canWrite();
  return h(
    "ul",
    { class: "score-chips" },
    scores.map((s) =>
      h(
        "li",
        { dataset: { scoreId: s.id, scoreName: s.name } },
        h("strong", {}, s.name),
        " ",
        h("span", { class: `value ${s.data_type}` }, valueOf(s)),
        h("span", { class: "muted" }, ` · ${s.source}${s.author ? ` · ${s.author}` : ""} · ${fmt.time(s.time)}`),
        s.comment ? h("span", { class: "comment", title: clip(s.comment, 2000) }, ` “${clip(s.comment, 160)}”`) : null,
        del ? h("button", { type: "button", class: "icon", title: `Delete the score ${s.name}`, "aria-label": `Delete the score ${s.name}`, onclick: (e) => onDelete(s, e.currentTarget) }, "×") : null,
      ),
    ),
  );
}

/** Mean scores by name (`{name: {mean, count}}`) as short chips. */
export function means(scores) {
  const names = Object.keys(scores || {}).sort();
  if (!names.length) return h("span", { class: "muted" }, "–");
  return names.map((n) => {
    const { mean, count } = scores[n];
    return h("span", { class: "chip score-mean", title: `${count} score${count === 1 ? "" : "s"}` }, `${n} ${mean === null ? `×${count}` : fmt.score(mean)}`);
  });
}

/** The text of the value field as JSON: a number, true/false, or a label. */
export function parseValue(text) {
  const t = text.trim();
  if (t === "true" || t === "false") return t === "true";
  if (/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t) && Number.isFinite(Number(t))) return Number(t);
  return t;
}

/**
 * The "Add score" form for `target` ({trace_id, span_id?} or
 * {session_id}); `onAdded(ids)` runs after the API's 202. Null for viewers.
 */
export function scoreForm(target, onAdded) {
  if (!canWrite()) return null;
  const name = h("input", { name: "name", required: true, autocomplete: "off", placeholder: "helpfulness", "aria-label": "Score name" });
  const value = h("input", { name: "value", required: true, autocomplete: "off", placeholder: "0.8, true, a label", "aria-label": "Value" });
  const comment = h("input", { name: "comment", autocomplete: "off", placeholder: "optional", "aria-label": "Comment" });
  const status = h("div", { class: "score-status", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Add score");
  const form = h(
    "form",
    { class: "score-form", "aria-label": "Add score" },
    h("label", { class: "field" }, h("span", {}, "Name"), name),
    h("label", { class: "field" }, h("span", {}, "Value"), value),
    h("label", { class: "field grow" }, h("span", {}, "Comment"), comment),
    button,
    status,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!name.value.trim() || !value.value.trim()) {
      status.replaceChildren(notice("error", "A score needs a name and a value."));
      return;
    }
    const body = { ...target, name: name.value.trim(), value: parseValue(value.value), source: "annotation" };
    if (comment.value.trim()) body.comment = comment.value.trim();
    button.disabled = true;
    status.replaceChildren(h("span", { class: "muted" }, "Saving…"));
    try {
      const answer = await request("POST", "/api/v1/scores", body);
      form.reset();
      status.replaceChildren(h("span", { class: "muted" }, "Saved; it shows here once stored…"));
      await onAdded(answer.ids || [], status);
    } catch (err) {
      status.replaceChildren(notice("error", problemText(err, "Not saved")));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

/** Deletes score `s`; `onDeleted(id)` runs after the API's 202. */
export async function deleteScore(s, button, onDeleted) {
  button.disabled = true;
  try {
    await request("DELETE", `/api/v1/scores/${encodeURIComponent(s.id)}`);
    await onDeleted(s.id);
  } catch (err) {
    button.disabled = false;
    button.replaceWith(notice("error", problemText(err, "Not deleted")));
  }
}

/** An API error as the user reads it: the problem's detail and its parameter. */
export function problemText(err, what) {
  const p = err.problem || {};
  if (err.status === 403) return `${what}: your role may not change scores (${err.message}).`;
  return `${what}: ${err.message}${p.parameter ? ` (${p.parameter})` : ""}`;
}

/**
 * Re-reads with `load()` until `done(answer)` holds, every 400 ms for up to
 * 5 s; answers the last read and whether it held.
 */
export async function untilStored(load, done, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, 400));
    const answer = await load();
    if (done(answer)) return { answer, stored: true };
    if (Date.now() >= deadline) return { answer, stored: false };
  }
}
