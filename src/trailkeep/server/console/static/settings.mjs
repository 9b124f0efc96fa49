// The owners' settings: one area per address (/console?view=settings&area=keys), each drawn by
// its own module from the API's answers. Only what the signed-in credential may do is offered:
// an owner's session manages and approves; a key with `manage` manages but never approves; an
// admin's or auditor's session, or a key without `manage`, is told why there is nothing here
// (and the server refuses them anyway). Every change the page makes is logged by the server as
// an `admin` entry; the page says which, and links to it.

import { ApiError } from "./api.mjs";
import { h, hrefOf, replace } from "./dom.mjs";
import { origins, retention } from "./settings-app.mjs";
import { keys } from "./settings-keys.mjs";
import { sessionSecret } from "./settings-secret.mjs";
import { erasures, holds } from "./settings-subjects.mjs";
import { webhooks } from "./settings-webhooks.mjs";
import { clear } from "./session.mjs";

export const AREAS = {
  retention: { label: "Retention", draw: retention },
  origins: { label: "Allowed origins", draw: origins },
  keys: { label: "API keys", draw: keys },
  webhooks: { label: "Webhooks", draw: webhooks },
  holds: { label: "Legal holds", draw: holds },
  erasures: { label: "Erasure requests", draw: erasures },
  session: { label: "Session secret", draw: sessionSecret },
};

/** Whether this sign-in may be offered the settings at all (a key finds out from the server). */
export function mayManage(signedIn) {
  return signedIn.kind === "key" || signedIn.role === "owner";
}

class Settings extends HTMLElement {
  /** Show the area the address asks for. */
  show(api, signedIn, params) {
    const area = AREAS[params.get("area")] ? params.get("area") : "retention";
    if (area !== this.area) this.once = null; // a secret shown once stays only where it was made
    this.api = api;
    this.signedIn = signedIn;
    this.area = area;
    document.title = `Settings: ${AREAS[area].label} · Trailkeep console`;
    if (!mayManage(signedIn)) {
      const role = signedIn.role;
      const reads = role === "admin" || role === "auditor";
      replace(this, h("h2", {}, "Settings"),
        h("p", { class: "card", "data-testid": "settings-refused" },
          `${/^[aeiou]/i.test(role) ? "An" : "A"} ${role} session `,
          reads ? "reads and verifies the log; it manages nothing. " : "manages nothing. ",
          "The settings are for an owner's session, or a key with the ",
          h("code", {}, "manage"), " scope. ",
          h("a", { href: hrefOf({}), "data-nav": true }, "Back to the log")));
      return;
    }
    // A tab followed from inside the view is redrawn: its heading takes the focus, so that the
    // keyboard goes on from the area (as an entry's heading does).
    const focusHeading = this.contains(document.activeElement);
    this.heading = h("h2", { tabindex: "-1" }, `Settings: ${AREAS[area].label}`);
    this.notice = h("p", { role: "status", class: "notice", tabindex: "-1", "data-testid": "settings-notice" });
    this.error = h("p", { role: "alert", class: "error", "data-testid": "settings-error" });
    this.body = h("div", { class: "settings-area", "data-area": area });
    replace(this,
      h("nav", { class: "tabs", "aria-label": "Settings" }, Object.entries(AREAS).map(([name, a]) =>
        h("a", {
          href: hrefOf({ view: "settings", area: name }), "data-nav": true,
          "aria-current": name === area ? "page" : null,
        }, a.label))),
      this.heading, this.notice, this.error, this.body);
    if (focusHeading) this.heading.focus();
    this.load();
  }

  /** Draw the area from the server's answers (again, after a change). */
  async load() {
    const ticket = (this.ticket = (this.ticket ?? 0) + 1);
    const area = this.area;
    const context = {
      api: this.api,
      signedIn: this.signedIn,
      // Approvals count owners' sessions only: a key never approves (DESIGN §5).
      canApprove: this.signedIn.kind === "session" && this.signedIn.role === "owner",
      run: (button, job) => this.run(button, job),
      keep: (panel) => this.keep(panel),
    };
    this.body.setAttribute("aria-busy", "true");
    try {
      const nodes = await AREAS[area].draw(context);
      if (ticket !== this.ticket) return;
      replace(this.body, this.once, nodes);
    } catch (error) {
      if (ticket !== this.ticket) return;
      replace(this.body);
      this.fail(error);
    } finally {
      if (ticket === this.ticket) this.body.removeAttribute("aria-busy");
    }
  }

  /** Carry out a change: the button waits, the API's refusal is said, the log entry named. */
  async run(button, job) {
    if (button) button.disabled = true;
    replace(this.error);
    replace(this.notice, "Working…");
    let result;
    try {
      result = await job();
    } catch (error) {
      replace(this.notice);
      this.fail(error);
      if (button?.isConnected) {
        button.disabled = false;
        button.focus();
      }
      return null;
    }
    if (result === null) { // the person cancelled, or the form was not filled in
      replace(this.notice);
      if (button?.isConnected) {
        button.disabled = false;
        button.focus(); // disabled while it waited, it lost the focus: given back
      }
      return null;
    }
    replace(this.notice, logged(result));
    await this.load();
    // The button that was pressed is gone with the redrawn area: the focus goes to what says
    // what happened (a secret shown once, or the notice).
    (this.once ?? this.notice).focus();
    return result;
  }

  /** Keep a panel (a secret shown once) above the area until it is dismissed. */
  keep(panel) {
    this.once = panel;
    if (panel === null) {
      this.body.querySelector(":scope > .once")?.remove();
      this.heading.focus();
    }
  }

  /** Say what went wrong, as the server said it. */
  fail(error) {
    if (error instanceof ApiError && error.status === 401) {
      clear(sessionStorage);
      window.dispatchEvent(new CustomEvent("tk-signin", {
        detail: { message: `Signed out by the server (${error.message}): sign in again.` },
      }));
      return;
    }
    if (error instanceof ApiError && error.status === 403) {
      replace(this.error, this.signedIn.kind === "key"
        ? `This key cannot do that (managing needs the manage scope): ${error.message}`
        : `Refused: ${error.message}`);
      return;
    }
    replace(this.error, error instanceof ApiError
      ? `The server refused: ${error.message}`
      : error.message);
  }
}

/** "Done: logged as key.create (seq 12)", each entry linked. */
function logged(result) {
  const entries = Array.isArray(result.entries) ? result.entries : result.entry ? [result.entry] : [];
  if (!entries.length) return "Done; nothing changed, so nothing was logged.";
  return ["Done; logged as ", entries.map((entry, i) => [i ? ", " : "",
    h("a", { href: hrefOf({ entry: entry.id }), "data-nav": true }, entry.action),
    ` (seq ${entry.seq})`]), "."];
}

customElements.define("tk-settings", Settings);
