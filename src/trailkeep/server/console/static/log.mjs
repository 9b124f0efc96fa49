// The two logs and one search: tabs (administrator actions, user actions, all), the search box
// (query.mjs), the histogram and live view (extras.mjs), and a table paged by cursor. The
// address holds the tab, the search and the page's cursor; the cursors of the pages before it
// are kept in the history entry's state, so Previous and the back button both work.

import { ApiError } from "./api.mjs";
import { Completer, KnownActions } from "./completion.mjs";
import { h, replace, timeOf } from "./dom.mjs";
import { Exporter } from "./export.mjs";
import { Histogram, Live } from "./extras.mjs";
import { pageNav } from "./nav.mjs";
import { QUALIFIERS, TABS, searchParams } from "./query.mjs";

const PAGE = 50;
const LANDING_QUERY = "-action:audit.read";
// Times show in the viewer's zone (UTC on hover); the column names it.
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
// The app's known actions, for completion: read once per page load and sign-in (GET /actions, a
// recorded read), kept across searches and tabs.
const known = new KnownActions();

/** The actor as a person reads it: name and id, or the type for a key or the system. */
export function actorText(actor) {
  if (!actor) return "";
  const who = actor.name ? `${actor.name} (${actor.id})` : actor.id;
  return actor.type === "user" ? who : `${actor.type} ${who}`;
}

/** The target as `type/id`. */
export function targetText(target) {
  return target ? `${target.type}/${target.id}` : "";
}

class Log extends HTMLElement {
  /** Build the parts that stay (so that focus and typed text survive a new page). */
  build() {
    this.tabs = h("nav", { class: "tabs", "aria-label": "Logs" });
    this.input = h("input", {
      id: "search", name: "q", type: "search", autocomplete: "off",
      spellcheck: "false", "aria-describedby": "search-help",
      placeholder: "action:order.refund actor:user_42 since:2026-11-01",
    });
    this.completer = new Completer(this.input, known, () => this.form.requestSubmit());
    this.form = h("form", { role: "search", class: "search", "aria-label": "Search the log" },
      h("label", { for: "search" }, "Search"),
      h("div", { class: "search-row" }, h("div", { class: "combo" }, this.input, this.completer.node),
        h("button", { type: "submit" }, "Search")),
      h("p", { id: "search-help", class: "help" },
        "Qualifiers: ", QUALIFIERS.map((q, i) => [i ? ", " : "", h("code", {}, `${q}:`)]),
        "; ", h("code", {}, "action:order.*"), " for a prefix, ",
        h("code", {}, "-action:audit.read"), " to leave one out. Dates are UTC. ",
        "Suggestions appear as you type (↓ to list them)."));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.nav.go(this.nav.href({ tab: this.tab, q: this.input.value.trim(), limit: this.limitParam }));
    });
    this.error = h("p", { role: "alert", class: "error", "data-testid": "log-error" });
    const chart = h("div", { class: "histogram-box", "data-testid": "histogram" });
    this.histogram = new Histogram(chart);
    this.liveButton = h("button", { type: "button", class: "quiet", "aria-pressed": "false" }, "Live");
    this.liveStatus = h("span", { class: "muted", role: "status", "data-testid": "live-status" });
    this.live = new Live((entry) => this.prepend(entry), (text) => replace(this.liveStatus, text));
    this.liveButton.addEventListener("click", () => {
      if (this.liveButton.getAttribute("aria-pressed") === "true") {
        this.setLive(false);
      } else {
        this.setLive(true);
      }
    });
    this.exporter = new Exporter();
    this.extras = h("div", { class: "extras" }, chart,
      h("div", { class: "live" }, this.liveButton, " ", this.liveStatus), this.exporter.node);
    this.status = h("p", { class: "muted", role: "status", "data-testid": "log-status" });
    this.body = h("tbody");
    this.table = h("table", { class: "entries" },
      h("caption", { class: "visually-hidden" }, "Entries, newest first"),
      h("thead", {}, h("tr", {}, [`Time (${ZONE})`, "Actor", "Action", "Target", "Kind", "IP"].map(
        (name) => h("th", { scope: "col" }, name)))),
      this.body);
    this.pages = h("nav", { class: "pages", "aria-label": "Pages" });
    replace(this, this.tabs, this.form, this.error, this.extras, this.status,
      h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Entries" }, this.table),
      this.pages);
  }

  /** Show the page the address asks for (`nav`: how to move, nav.mjs). */
  async show(api, signedIn, params, nav = pageNav) {
    this.nav = nav;
    if (!this.tabs) this.build();
    known.load(api);
    this.api = api;
    this.signedIn = signedIn;
    // The bare landing address opens every entry but the log's records of its own reads: each
    // page the console shows records one, and they would bury what a person came for. The
    // search box shows that term, so it can be taken out.
    const landing = !["tab", "q", "cursor", "limit"].some((name) => params.has(name));
    this.tab = TABS[params.get("tab")] ? params.get("tab") : "all";
    this.query = params.get("q") ?? (landing ? LANDING_QUERY : "");
    this.cursor = params.get("cursor");
    this.limitParam = params.get("limit");
    const limit = Math.min(Math.max(Number(this.limitParam) || PAGE, 1), 1000);
    if (this.getRootNode().activeElement !== this.input || this.input.value.trim() !== this.query) {
      this.input.value = this.query;
    }
    nav.title(`${TABS[this.tab].label} · Trailkeep console`);
    this.renderTabs();
    const { params: filters, errors } = searchParams(this.tab, this.query);
    this.filters = filters;
    this.exporter.set(api, filters, errors.length === 0);
    replace(this.error, errors.join(" "));
    this.error.hidden = errors.length === 0;
    if (errors.length) {
      this.histogram.clear();
      this.setLive(false);
      replace(this.body);
      replace(this.pages);
      replace(this.status, "Fix the search to see entries.");
      return;
    }
    this.histogram.update(api, filters);
    // Live entries belong at the top of the newest page: on an older page there is no top.
    this.liveButton.disabled = Boolean(this.cursor);
    if (this.cursor) this.setLive(false);
    else if (this.liveButton.getAttribute("aria-pressed") === "true") this.live.start(api, filters);
    const ticket = (this.ticket = (this.ticket ?? 0) + 1);
    replace(this.status, "Loading…");
    const query = [...filters, ["limit", String(limit)]];
    if (this.cursor) query.push(["cursor", this.cursor]);
    let page;
    try {
      page = await api.json("/events", query);
    } catch (error) {
      if (ticket !== this.ticket) return;
      if (error instanceof ApiError && error.status === 401) {
        // The server no longer takes this credential (expired, revoked): sign in again.
        nav.signedOut(messageOf(error, signedIn));
        return;
      }
      replace(this.body);
      replace(this.pages);
      replace(this.status);
      this.error.hidden = false;
      replace(this.error, messageOf(error, signedIn));
      return;
    }
    if (ticket !== this.ticket) return;
    replace(this.body, page.data.map((entry) => row(entry, nav.href)));
    const shown = page.data.length;
    replace(this.status, shown === 0 ? "No entries match." :
      `${shown} ${shown === 1 ? "entry" : "entries"}${page.next_cursor ? ", more on the next page" : ""}.`);
    this.renderPages(page.next_cursor);
  }

  /** Put one entry at the top of the table (the live view), if this is the first page. */
  prepend(entry) {
    if (this.cursor || this.body.querySelector(`tr[data-seq="${Number(entry.seq)}"]`)) return false;
    this.body.prepend(row(entry, this.nav.href, true));
    return true;
  }

  /** Start or stop the live view. */
  setLive(on) {
    this.liveButton.setAttribute("aria-pressed", String(on));
    if (on) {
      this.live.start(this.api, this.filters);
    } else {
      this.live.stop();
      replace(this.liveStatus);
    }
  }

  disconnectedCallback() {
    this.live?.stop();
  }

  renderTabs() {
    replace(this.tabs, Object.entries(TABS).map(([name, tab]) => h("a", {
      href: this.nav.href({ tab: name, q: this.query, limit: this.limitParam }), "data-nav": true,
      "aria-current": name === this.tab ? "page" : null, "data-tab": name,
    }, tab.label)));
  }

  renderPages(next) {
    const { go, href: hrefOf, state } = this.nav;
    const back = Array.isArray(state()?.back) ? state().back : [];
    const here = { tab: this.tab, q: this.query, limit: this.limitParam };
    const button = (label, enabled, onclick) => h("button", {
      type: "button", class: "quiet", disabled: !enabled, onclick,
    }, label);
    replace(this.pages,
      button("Newest", Boolean(this.cursor), () => go(hrefOf(here))),
      button("Previous", back.length > 0, () => go(
        hrefOf({ ...here, cursor: back.at(-1) || null }), { back: back.slice(0, -1) })),
      button("Next", Boolean(next), () => go(
        hrefOf({ ...here, cursor: next }), { back: [...back, this.cursor ?? ""] })));
  }
}

/** One table row; the action links to the entry (its address made by `hrefOf`). */
function row(entry, hrefOf, fresh = false) {
  if (entry.erased) {
    return h("tr", { class: "erased", "data-seq": entry.seq }, h("td", {}, timeOf(entry.time)),
      h("td", { colspan: "5" }, h("a", { href: hrefOf({ entry: entry.id }), "data-nav": true },
        `erased entry, seq ${entry.seq}`)));
  }
  // data-label: on a narrow screen each row is a card, and each cell says what it is.
  return h("tr", { class: fresh ? "fresh" : null, "data-seq": entry.seq },
    h("td", { "data-label": "Time" }, timeOf(entry.time)),
    h("td", { "data-label": "Actor" }, actorText(entry.actor)),
    h("td", { "data-label": "Action" },
      h("a", { href: hrefOf({ entry: entry.id }), "data-nav": true }, entry.action)),
    h("td", { "data-label": "Target" }, targetText(entry.target)),
    h("td", { "data-label": "Kind" }, entry.kind),
    h("td", { "data-label": "IP" }, entry.context?.ip ?? ""));
}

/** What a failed read means for the person looking. */
export function messageOf(error, signedIn) {
  if (error instanceof ApiError && error.status === 403) {
    return signedIn.kind === "key"
      ? `This key cannot read the log (it needs events:read): ${error.message}`
      : `A ${signedIn.role} session cannot read the log (owners, admins and auditors can): ${error.message}`;
  }
  if (error instanceof ApiError && error.status === 401) {
    return `Signed out by the server (${error.message}): sign in again.`;
  }
  return `The server answered: ${error.message}`;
}

customElements.define("tk-log", Log);
