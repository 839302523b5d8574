// Building DOM nodes. Text is always set as text (textContent), never parsed
// as HTML: span names, attributes and messages are data, whatever they hold.

import { RANGES } from "./format.js";

/**
 * h("a", {href: "#/x", class: "c", onclick: fn}, "text", child, [more])
 * Strings and numbers become text nodes; null and false are skipped.
 */
export function h(tag, props, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "href" && !safeHref(value)) {
      throw new Error(`refused link ${value}`);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Only our own links: in-page routes and the API. */
function safeHref(value) {
  const v = String(value);
  return v.startsWith("#") || v.startsWith("/");
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A labelled form control: <label>Text <input></label>. */
export function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}

/** A message box for errors and notices (role=alert for errors). */
export function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/** A term and its value, for a <dl class="facts">. */
export function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

/**
 * A filter form's time window: a preset select (`range`) and, for
 * "Custom", UTC `from`/`to` inputs shown beside it. Returns both nodes.
 */
export function timeRange(params) {
  const range = h(
    "select",
    { name: "range" },
    RANGES.map(([k, label]) => h("option", { value: k, selected: (params.range || "1h") === k && !params.from }, label)),
    h("option", { value: "custom", selected: !!params.from }, "Custom"),
  );
  const local = (iso) => (iso ? new Date(iso).toISOString().slice(0, 19) : "");
  const from = h("input", { type: "datetime-local", name: "from", step: 1, value: local(params.from) });
  const to = h("input", { type: "datetime-local", name: "to", step: 1, value: local(params.to) });
  const custom = h("span", { class: "custom", hidden: !params.from }, field("From (UTC)", from), field("To (UTC)", to));
  range.addEventListener("change", () => (custom.hidden = range.value !== "custom"));
  return [field("Time", range), custom];
}

/**
 * Puts the form value `k`=`v` of a [timeRange] into the URL's parameters
 * `next`; false when `k` is not one of its fields.
 */
export function takeTimeRange(data, k, v, next) {
  if (k === "range") {
    if (v !== "custom") next.range = v;
    return true;
  }
  if (k === "from" || k === "to") {
    if (data.get("range") === "custom" && v) next[k] = new Date(`${v}Z`).toISOString();
    return true;
  }
  return false;
}
