// <trailkeep-log>: the console's log viewer inside an app's own admin pages. One script tag,
//
//   <script type="module" src="https://audit.example.com/console/embed.mjs"></script>
//   <trailkeep-log app="app_..."></trailkeep-log>
//
// and the page's code hands the element a session that the app's backend minted:
// `element.session = token`. Read-only: the tabs, search, histogram, live view, table, one
// entry and Verify (log.mjs, entry.mjs and verify.mjs themselves, not copies); no settings, no
// export. It lives in a shadow root, the console's stylesheet adopted there, so the page's
// styles do not reach in and ours do not reach out; the page themes it with --tk-* properties.
// It calls the Trailkeep server from the page's own origin, which must be among the app's
// allowed origins (CORS), and every read is recorded as a person's read, as the console's are.
// The view (tab, search, page, entry) is kept in the element: the page's URL, history and
// title stay the page's own.

import { Api, ApiError, checkpointKey } from "./api.mjs";
import { h, replace } from "./dom.mjs";
import "./entry.mjs";
import "./log.mjs";
import { fromSession } from "./session.mjs";
import { parseVerifierKey } from "./verify.mjs";

const HERE = new URL(import.meta.url);
const STYLES = ["console.css", "embed.css"];
// Back is a few steps, not a browser's history: enough to return from an entry to the log.
const DEPTH = 50;
let sheets = null;

/** The stylesheets every <trailkeep-log> on the page adopts, fetched once. */
function styleSheets() {
  sheets ??= Promise.all(STYLES.map(async (name) => {
    const response = await fetch(new URL(`./${name}`, HERE), { credentials: "omit" });
    if (!response.ok) throw new Error(`${name}: ${response.status}`);
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(await response.text());
    return sheet;
  })).catch((error) => {
    sheets = null; // another element, or a later start, tries again
    throw error;
  });
  return sheets;
}

/** The full console's address of a view: what a link offers to open in a new tab. */
function consoleHref(server, params) {
  const url = new URL("/console", server);
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  return url.href;
}

class TrailkeepLog extends HTMLElement {
  static observedAttributes = ["app", "server", "q", "tab"];

  // The session is a property only, never an attribute: an attribute is part of the page's
  // markup, so it would be in every copy of the DOM (serialised markup, session-replay and
  // error-report tools, devtools), reachable by CSS attribute selectors (a style injected into the page can
  // leak an attribute's value character by character), and, written into HTML by a server,
  // cached and logged with the page. Kept in a private field; it can be set, not read back.
  #session = null;
  #ticket = 0;

  constructor() {
    super();
    this.root = this.attachShadow({ mode: "open" });
    this.message = h("p", { class: "message", "data-testid": "embed-message" });
    this.view = h("div", { class: "view" });
    this.frame = h("div", { class: "frame", part: "frame" }, this.message, this.view);
    this.root.append(this.frame);
    this.log = document.createElement("tk-log");
    this.stack = [];
    this.at = { params: this.initialParams(), state: null };
    this.nav = Object.freeze({
      href: (params) => consoleHref(this.server, params),
      go: (href, state = null) => {
        this.stack = [...this.stack, this.at].slice(-DEPTH);
        this.at = { params: new URL(href).searchParams, state };
        this.render();
      },
      state: () => this.at.state,
      back: () => {
        this.at = this.stack.pop() ?? { params: this.initialParams(), state: null };
        this.render();
      },
      title: () => {}, // the page's title is the page's
      signedOut: (text) => this.expired(text),
    });
    this.root.addEventListener("click", (event) => this.follow(event));
    // A session set before this module defined the element is an own property of the element
    // then, hiding the setter: take it into the private field.
    if (Object.hasOwn(this, "session")) {
      const token = this.session;
      delete this.session;
      this.#session = typeof token === "string" && token.trim() ? token.trim() : null;
    }
  }

  /** A session token the app's backend minted for this person (owner, admin or auditor). */
  set session(token) {
    this.#session = typeof token === "string" && token.trim() ? token.trim() : null;
    this.start();
  }

  /** The Trailkeep server: the `server` attribute, else where this module came from. */
  get server() {
    return this.getAttribute("server") || HERE.origin;
  }

  connectedCallback() {
    this.start();
  }

  attributeChangedCallback(name, old, value) {
    if (old === value || !this.isConnected) return;
    if (name === "q" || name === "tab") {
      this.stack = [];
      this.at = { params: this.initialParams(), state: null };
      if (this.api) this.render();
    } else {
      this.start();
    }
  }

  /** The view the attributes ask for first: a tab and a search. */
  initialParams() {
    const params = new URLSearchParams();
    for (const name of ["tab", "q"]) {
      if (this.getAttribute(name)) params.set(name, this.getAttribute(name));
    }
    return params;
  }

  /** Check the session and the server, pin the checkpoint key, then show the log. */
  async start() {
    const ticket = ++this.#ticket;
    const current = () => ticket === this.#ticket && this.isConnected;
    if (!this.isConnected) return;
    this.api = null;
    replace(this.view);
    try {
      this.root.adoptedStyleSheets = await styleSheets();
    } catch {
      // Unstyled still works: the messages and the viewer say what they say.
    }
    if (!current()) return;
    const app = (this.getAttribute("app") ?? "").trim();
    if (!app) return this.say("Give the element the app's id: <trailkeep-log app=\"app_…\">.");
    const token = this.#session;
    if (!token) return this.say("Waiting for a session from this page (element.session = token).", "status");
    const read = fromSession(token);
    if (!read) return this.say("The session given is not a Trailkeep session token.");
    // An app's own session names its app as audience; another app's is refused here, with a
    // clearer word than the server's. An identity provider's token names the provider's own
    // audience: the server judges it.
    if (read.app !== app && /^app_[A-Za-z0-9]+$/.test(read.app)) {
      return this.say(`The session is for app ${read.app}, not ${app}: mint it for ${app}.`);
    }
    const signedIn = { ...read, app };
    if (signedIn.expires !== null && signedIn.expires * 1000 <= Date.now()) {
      return this.expired("The session has expired: this page must mint a new one.");
    }
    let server;
    try {
      server = new URL(this.server).origin;
    } catch {
      return this.say(`The server attribute is not an address: ${this.server}`);
    }
    this.say("Connecting…", "status");
    let key;
    try {
      key = await checkpointKey(server);
      await parseVerifierKey(key); // refuse a key that could never verify anything
    } catch (error) {
      if (current()) this.say(`Cannot reach the Trailkeep server at ${server}: ${error.message}`);
      return;
    }
    const api = new Api({ ...signedIn, server });
    try {
      // As the console's sign-in: the checkpoint checks the credential, and records nothing.
      await api.text("/checkpoint");
    } catch (error) {
      if (current()) this.refused(error, server, app);
      return;
    }
    if (!current()) return;
    this.signedIn = { ...signedIn, server, checkpointKey: key };
    this.api = api;
    this.say("");
    this.render();
  }

  /** Show the view `this.at` asks for: the log, or one entry. */
  render() {
    if (!this.api) return;
    const entry = this.at.params.get("entry");
    if (entry) {
      const view = document.createElement("tk-entry");
      replace(this.view, view);
      view.show(this.api, this.signedIn, entry, this.nav);
    } else {
      // One log element for the element's life: back from an entry keeps its typed search.
      if (!this.log.isConnected) replace(this.view, this.log);
      this.log.show(this.api, this.signedIn, this.at.params, this.nav);
    }
  }

  /** A plain click on a viewer's link moves within the element (a modified one opens the console). */
  follow(event) {
    const link = event.target instanceof Element ? event.target.closest("a[data-nav]") : null;
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    const href = link.getAttribute("href");
    const toEntry = new URL(href).searchParams.has("entry");
    this.nav.go(href, toEntry && !this.at.params.has("entry") ? { fromLog: true } : null);
  }

  /** Why the server did not take the session from this page, said plainly. */
  refused(error, server, app) {
    if (!(error instanceof ApiError)) {
      // A refused CORS preflight and an unreachable server look the same to a page.
      return this.say(`The Trailkeep server at ${server} did not answer this page. Its origin, ` +
        `${location.origin}, must be among the app's allowed origins ` +
        `(trailkeep apps update ${app} --allow-origin ${location.origin}).`);
    }
    if (error.status === 401) {
      return this.expired(`The server does not take this session (${error.message}): ` +
        "it has expired, or was not minted with this app's session secret.");
    }
    if (error.status === 404) {
      return this.say(`The server at ${server} has no app ${app}, or the session is not for it.`);
    }
    return this.say(`The server answered: ${error.message}`);
  }

  /** The session is over: say so, and tell the page, which may set a new one. */
  expired(text) {
    this.api = null;
    replace(this.view);
    this.say(text);
    this.dispatchEvent(new CustomEvent("trailkeep-session-expired", { bubbles: true, composed: true }));
  }

  /** A message above the viewer: an alert (a problem) or a status (progress). */
  say(text, role = "alert") {
    this.message.setAttribute("role", role);
    this.message.className = role === "alert" && text ? "message error" : "message muted";
    replace(this.message, text);
  }
}

if (!customElements.get("trailkeep-log")) customElements.define("trailkeep-log", TrailkeepLog);
