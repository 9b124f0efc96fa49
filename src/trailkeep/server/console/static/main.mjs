// The console's shell: who is signed in (header), and which view the address asks for — the
// sign-in, the log (tabs, search, table) or one entry. The address is the state: every view is
// a URL that can be bookmarked, shared, reloaded, and gone back to.

import { Api } from "./api.mjs";
import { go, h, hrefOf, replace } from "./dom.mjs";
import "./entry.mjs";
import "./log.mjs";
import * as session from "./session.mjs";
import { mayManage } from "./settings.mjs";
import { finishSignIn, signInForm } from "./signin.mjs";

// Same-origin console links are followed in place (a modified click still opens a tab).
document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-nav]") : null;
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  const href = link.getAttribute("href");
  const toEntry = new URL(href, location.href).searchParams.has("entry");
  const fromLog = !new URLSearchParams(location.search).has("entry");
  go(href, toEntry && fromLog ? { fromLog: true } : null);
});

class Who extends HTMLElement {
  /** Show the signed-in person and role, with sign-out; nothing when signed out. */
  render() {
    const signedIn = session.load(sessionStorage);
    if (!signedIn) {
      replace(this);
      return;
    }
    const role = signedIn.kind === "key" ? "API key" : signedIn.role;
    replace(this,
      h("span", { class: "who", "data-testid": "who" },
        h("span", { class: "muted" }, "Signed in: "), h("strong", {}, signedIn.who),
        " ", h("span", { class: "badge", "data-testid": "role" }, role),
        " ", h("span", { class: "muted" }, "app "), h("code", {}, signedIn.app)),
      viewsNav(signedIn),
      h("button", { type: "button", class: "quiet", onclick: () => signOut() }, "Sign out"));
  }

  connectedCallback() {
    this.render();
    window.addEventListener("tk-signin", () => this.render());
    // The views' links mark the open one (marked, not redrawn: a focused link keeps the focus).
    window.addEventListener("tk-navigate", () => markView(this));
    window.addEventListener("popstate", () => markView(this));
  }
}

/** Links to the log and the settings, for a sign-in that may manage; nothing otherwise. */
function viewsNav(signedIn) {
  if (!mayManage(signedIn)) return null;
  const nav = h("nav", { class: "views", "aria-label": "Views" },
    h("a", { href: hrefOf({}), "data-nav": true, "data-view": "log" }, "Log"),
    h("a", { href: hrefOf({ view: "settings" }), "data-nav": true, "data-view": "settings" }, "Settings"));
  markView(nav);
  return nav;
}

/** Mark the link of the view the address shows. */
function markView(root) {
  const settings = new URLSearchParams(location.search).get("view") === "settings";
  for (const link of root.querySelectorAll("a[data-view]")) {
    const here = (link.dataset.view === "settings") === settings;
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function signOut() {
  session.clear(sessionStorage);
  window.dispatchEvent(new Event("tk-signin"));
  go(location.pathname);
}

class Console extends HTMLElement {
  connectedCallback() {
    this.takeLink();
    // A link pasted into a tab that shows the console already is a same-page navigation.
    window.addEventListener("hashchange", () => {
      if (this.takeLink()) this.render();
    });
    window.addEventListener("popstate", () => this.render());
    window.addEventListener("tk-navigate", () => this.render());
    window.addEventListener("tk-signin", (event) => {
      if (event.detail?.message) this.linkError = event.detail.message;
      this.render();
    });
    this.render();
  }

  /** Take a sign-in link's session out of the address; true when there was one. */
  takeLink() {
    const token = session.takeFragment(location, history);
    if (!token) return false;
    const signedIn = session.fromSession(token);
    if (signedIn) {
      this.pending = signedIn;
    } else {
      this.linkError = "The sign-in link's session cannot be read: ask for a new link.";
    }
    return true;
  }

  async render() {
    if (this.pending) {
      const pending = this.pending;
      this.pending = null;
      replace(this, h("p", { role: "status" }, "Signing in…"));
      try {
        await finishSignIn(pending);
      } catch (error) {
        this.linkError = `Sign-in failed: ${error.message}`;
      }
    }
    let signedIn = session.load(sessionStorage);
    if (signedIn?.expires && signedIn.expires * 1000 <= Date.now()) {
      session.clear(sessionStorage);
      window.dispatchEvent(new Event("tk-signin"));
      signedIn = null;
      this.linkError = "The session has expired: sign in again (a new link, or a key).";
    }
    if (!signedIn) {
      document.title = "Sign in · Trailkeep console";
      replace(this, signInForm(this.linkError));
      this.linkError = null;
      return;
    }
    const api = new Api(signedIn);
    const params = new URLSearchParams(location.search);
    const entry = params.get("entry");
    if (params.get("view") === "settings" && !entry) {
      const view = this.querySelector(":scope > tk-settings") ?? document.createElement("tk-settings");
      if (!view.isConnected) replace(this, view);
      view.show(api, signedIn, params);
    } else if (entry) {
      const view = document.createElement("tk-entry");
      view.show(api, signedIn, entry);
      replace(this, view);
    } else {
      const view = this.querySelector(":scope > tk-log") ?? document.createElement("tk-log");
      if (!view.isConnected) replace(this, view);
      view.show(api, signedIn, params);
    }
  }
}

customElements.define("tk-who", Who);
customElements.define("tk-console", Console);
