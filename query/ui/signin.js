// Sign in: paste a token (`observatory-api token` prints one), which is
// checked against the API before it is kept.

import { claimsOf, signIn, takeSignedOutMessage, get, ApiError } from "./api.js";
import { h, field, notice } from "./dom.js";

export function render(main) {
  const why = takeSignedOutMessage();
  const input = h("textarea", {
    id: "token",
    rows: 4,
    spellcheck: "false",
    autocomplete: "off",
    placeholder: "eyJhbGciOi…",
    required: true,
  });
  const status = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "signin", onsubmit: (e) => submit(e, input.value, status) },
    h("h1", {}, "Sign in"),
    why ? notice("error", why) : null,
    h(
      "p",
      { class: "muted" },
      "Paste a token (JWT) for your tenant. For development, ",
      h("code", {}, "observatory-api token --tenant T --role viewer"),
      " prints one. It stays in this tab only.",
    ),
    field("Token", input),
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  main.replaceChildren(form);
  input.focus();
}

async function submit(event, value, status) {
  event.preventDefault();
  const t = value.trim();
  let claims;
  try {
    claims = claimsOf(t);
  } catch (e) {
    status.replaceChildren(notice("error", `That is not a token: ${e.message}`));
    return;
  }
  if (claims.exp && claims.exp * 1000 < Date.now()) {
    status.replaceChildren(notice("error", "This token has expired: mint a new one."));
    return;
  }
  signIn(t);
  try {
    // Any tenant-scoped read proves the API accepts the token.
    await get("/api/v1/budgets");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // signed out again, with the reason
    status.replaceChildren(notice("error", `The API did not answer: ${e.message}`));
    return;
  }
  location.hash = "#/traces";
}
