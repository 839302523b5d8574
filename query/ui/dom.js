// Building DOM nodes. Text is always set as text (textContent), never parsed
// as HTML: span names, attributes and messages are data, whatever they hold.

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
