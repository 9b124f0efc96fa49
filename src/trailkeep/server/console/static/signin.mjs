// Signing in: a key with `events:read` (and its app), or a session from a sign-in link. Either
// way the server's checkpoint key is fetched and pinned now, so that every later Verify checks
// signatures against the key seen at sign-in, not one a changed server might hand out later.

import { Api, checkpointKey } from "./api.mjs";
import { h } from "./dom.mjs";
import * as session from "./session.mjs";
import { parseVerifierKey } from "./verify.mjs";

/** Pin the checkpoint key, check the credential against its app, and keep the sign-in. */
export async function finishSignIn(signedIn) {
  const key = await checkpointKey();
  await parseVerifierKey(key); // refuse a key that could never verify anything
  // The checkpoint answers any credential of the app and is not a read of the log: it checks
  // the credential without recording anything.
  await new Api(signedIn).text("/checkpoint");
  session.save(sessionStorage, { ...signedIn, checkpointKey: key });
  window.dispatchEvent(new Event("tk-signin"));
}

/** The sign-in form; `message` says why a previous attempt failed. */
export function signInForm(message) {
  const status = h("p", { role: "alert", class: "error", id: "signin-error" }, message ?? "");
  const app = h("input", {
    id: "signin-app", name: "app", autocomplete: "off", spellcheck: "false",
    placeholder: "app_…", "aria-describedby": "signin-app-help",
  });
  const key = h("input", {
    id: "signin-key", name: "key", type: "password", autocomplete: "off", required: true,
    spellcheck: "false", "aria-describedby": "signin-key-help",
  });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card signin", "aria-labelledby": "signin-title" },
    h("h2", { id: "signin-title" }, "Sign in"),
    h("p", {}, "Open a sign-in link (", h("code", {}, "trailkeep console link --app APP --sub you --role owner"),
      "), or paste a key that can read the log."),
    h("div", { class: "field" },
      h("label", { for: "signin-key" }, "API key or session token"),
      key,
      h("p", { class: "help", id: "signin-key-help" },
        "A key with the events:read scope. Kept in this tab only, until you sign out or close it.")),
    h("div", { class: "field" },
      h("label", { for: "signin-app" }, "App id"),
      app,
      h("p", { class: "help", id: "signin-app-help" }, "The app the key belongs to (a session names its own).")),
    button, status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = key.value.trim();
    let signedIn = text.split(".").length === 3 ? session.fromSession(text) : null;
    if (!signedIn) {
      if (!app.value.trim()) {
        status.textContent = "Give the app id the key belongs to.";
        app.focus();
        return;
      }
      signedIn = session.fromKey(text, app.value);
    }
    button.disabled = true;
    status.textContent = "";
    try {
      await finishSignIn(signedIn);
    } catch (error) {
      status.textContent = `Sign-in failed: ${error.message}`;
      button.disabled = false;
    }
  });
  return form;
}
