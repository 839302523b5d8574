// The router: `#/traces`, `#/trace/<id>?span=<id>`, `#/sessions`,
// `#/session/<id>`, `#/users`, `#/user/<id>`, `#/logs`, `#/metrics`,
// `#/dashboard`, `#/health`
// (admins), `#/signin`. Every page is a module with `render(main, arg, params)` that
// may return a function to call when the page is left.

import { user, signIn, signOut } from "./api.js";
import { h } from "./dom.js";
import { parseHash } from "./format.js";
import * as signin from "./signin.js";
import * as traces from "./traces.js";
import * as trace from "./trace.js";
import * as sessions from "./sessions.js";
import * as session from "./session.js";
import * as users from "./users.js";
import * as userPage from "./user.js";
import * as logs from "./logs.js";
import * as metrics from "./metrics.js";
import * as dashboard from "./dashboard.js";
import * as health from "./health.js";

const PAGES = { signin, traces, trace, sessions, session, users, user: userPage, logs, metrics, dashboard, health };
/** The nav entry of a page that has none of its own. */
const PARENT = { trace: "traces", session: "sessions", user: "users" };
let leave = null;
let expiry = null;

function takeTokenFromLink() {
  // `demo.sh` prints a link `/#token=...`: keep the token, then drop it from
  // the address bar and the history at once.
  const m = location.hash.match(/^#token=([A-Za-z0-9._-]+)$/);
  if (!m) return;
  signIn(m[1]);
  history.replaceState(null, "", `${location.pathname}#/traces`);
}

function header(claims) {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  nav.hidden = !claims;
  who.hidden = !claims;
  if (!claims) return;
  who.replaceChildren(
    h("span", { class: "tenant", title: "tenant" }, claims.tenant || "?"),
    h("span", { class: "muted" }, ` ${claims.sub || ""} · ${claims.role || ""} `),
    h("button", { type: "button", class: "link", onclick: () => signOut("You signed out.") }, "Sign out"),
  );
  const { page } = parseHash(location.hash);
  nav.querySelector('[data-page="health"]').hidden = claims.role !== "admin";
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === (PARENT[page] || page)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function route() {
  if (leave) {
    leave();
    leave = null;
  }
  clearTimeout(expiry);
  const main = document.getElementById("main");
  const claims = user();
  let { page, arg, params } = parseHash(location.hash);
  if (!claims && page !== "signin") {
    location.hash = "#/signin";
    return;
  }
  if (claims && claims.exp) {
    const left = claims.exp * 1000 - Date.now();
    if (left <= 0) {
      signOut("Your token expired. Paste a new one.");
      return;
    }
    expiry = setTimeout(() => signOut("Your token expired. Paste a new one."), Math.min(left, 2 ** 31 - 1));
  }
  if (!PAGES[page] || (claims && page === "signin")) {
    location.hash = claims ? "#/traces" : "#/signin";
    return;
  }
  header(page === "signin" ? null : claims);
  const done = PAGES[page].render(main, arg, params);
  if (typeof done === "function") leave = done;
}

takeTokenFromLink();
window.addEventListener("hashchange", route);
route();
