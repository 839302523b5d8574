// The public API, with the signed-in user's token. The token lives in this
// tab's session storage only: never in a URL, never logged, sent only in the
// Authorization header. A 401 signs the user out with the API's reason.

const KEY = "observatory.token";

/** Claims of a JWT's payload (not verified here: the API verifies). */
export function claimsOf(token) {
  const part = String(token).split(".")[1];
  if (!part) throw new Error("this is not a JWT: it has no payload part");
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const json = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const claims = JSON.parse(json);
  if (typeof claims !== "object" || claims === null) throw new Error("the token's payload is not an object");
  return claims;
}

export function token() {
  return sessionStorage.getItem(KEY);
}

/** The signed-in user's claims, or null. */
export function user() {
  const t = token();
  if (!t) return null;
  try {
    return claimsOf(t);
  } catch {
    return null;
  }
}

export function signIn(t) {
  sessionStorage.setItem(KEY, t.trim());
}

let signedOutMessage = "";

/** Forgets the token; `why` is shown on the sign-in page. */
export function signOut(why) {
  sessionStorage.removeItem(KEY);
  signedOutMessage = why || "";
  if (!location.hash.startsWith("#/signin")) location.hash = "#/signin";
  else window.dispatchEvent(new HashChangeEvent("hashchange"));
}

export function takeSignedOutMessage() {
  const m = signedOutMessage;
  signedOutMessage = "";
  return m;
}

/** An API error: `status` and the problem document's `detail`. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * GET `path` with `params` (an object; arrays repeat the parameter; empty
 * values are left out). Answers the parsed JSON.
 */
export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one !== undefined && one !== null && one !== "") query.append(k, one);
    }
  }
  const q = query.toString();
  return request("GET", q ? `${path}?${q}` : path);
}

export async function request(method, url, body) {
  const t = token();
  if (!t) {
    signOut("Sign in to continue.");
    throw new ApiError(401, { detail: "not signed in" });
  }
  const headers = { Authorization: `Bearer ${t}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (response.status === 401) {
    const why = (data && data.detail) || "your token was refused";
    signOut(`Signed out: ${why}. Paste a new token.`);
    throw new ApiError(401, data || {});
  }
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}
