// Who is signed in, kept in sessionStorage (this tab only, gone when it closes), never in a URL.
// A sign-in link carries its session in the fragment (#session=...), which browsers never send
// to a server; the page moves it into storage and clears the fragment at once.

const STORE = "trailkeep.console";

/** The JWT's claims, decoded for display only: the server verifies every request itself. */
export function claimsOf(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/** The app a session is for: its `aud` (a string, or the first of a list). */
function appOf(claims) {
  const aud = claims?.aud;
  if (typeof aud === "string") return aud;
  return Array.isArray(aud) && typeof aud[0] === "string" ? aud[0] : null;
}

/** A signed-in credential from a session token; null when the token cannot be read. */
export function fromSession(token) {
  const claims = claimsOf(token);
  const app = appOf(claims);
  if (!claims || !app || typeof claims.sub !== "string") return null;
  return {
    kind: "session", credential: token, app,
    who: typeof claims.name === "string" ? `${claims.name} (${claims.sub})` : claims.sub,
    role: typeof claims.role === "string" ? claims.role : "user",
    expires: typeof claims.exp === "number" ? claims.exp : null,
  };
}

/** A signed-in credential from an API key and the app it belongs to. */
export function fromKey(key, app) {
  const text = String(key).trim();
  return { kind: "key", credential: text, app: String(app).trim(), who: `key ${text.slice(0, 10)}…`, role: "key" };
}

/** Take `#session=...` out of the address (and out of history), returning the token. */
export function takeFragment(location, history) {
  const match = /^#session=([A-Za-z0-9._-]+)$/.exec(location.hash);
  if (!match) return null;
  history.replaceState(history.state, "", location.pathname + location.search);
  return match[1];
}

/** The stored sign-in, or null. */
export function load(storage) {
  try {
    const found = JSON.parse(storage.getItem(STORE) ?? "null");
    return found && typeof found.credential === "string" ? found : null;
  } catch {
    return null;
  }
}

/** Keep a sign-in (with its pinned checkpoint key) for this tab. */
export function save(storage, signedIn) {
  storage.setItem(STORE, JSON.stringify(signedIn));
}

/** Forget the sign-in. */
export function clear(storage) {
  storage.removeItem(STORE);
}
