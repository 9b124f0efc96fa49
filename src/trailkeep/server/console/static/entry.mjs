// One entry: every field, metadata as a collapsible tree, `changes` as old → new, links that
// search for the same actor, target or action, and Verify (verify.mjs) against the checkpoint
// key pinned at sign-in.

import { ApiError } from "./api.mjs";
import { h, replace, timeOf } from "./dom.mjs";
import { actorText, messageOf, targetText } from "./log.mjs";
import { pageNav } from "./nav.mjs";
import { term } from "./query.mjs";
import { VerifyFailure, parseVerifierKey, verifyProven } from "./verify.mjs";

/** A JSON value as a tree: objects and arrays are details/summary, scalars are text. */
export function jsonTree(value, label = null) {
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    const count = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
    return h("details", { open: true, class: "tree" },
      h("summary", {}, label === null ? count : [h("span", { class: "key" }, label), " ", h("span", { class: "muted" }, count)]),
      h("ul", {}, entries.map(([k, v]) => h("li", {}, jsonTree(v, k)))));
  }
  const text = h("span", { class: `value ${value === null ? "null" : typeof value}` }, JSON.stringify(value));
  return label === null ? text : h("span", {}, h("span", { class: "key" }, label), ": ", text);
}

/** A change's side: the JSON value, or "absent" (a field added has no old, one removed no new). */
function side(change, name) {
  return name in change ? h("code", {}, JSON.stringify(change[name])) : h("em", { class: "muted" }, "absent");
}

function field(name, ...value) {
  return [h("dt", {}, name), h("dd", {}, ...value)];
}

function searchLink(nav, text, q) {
  return h("a", { href: nav.href({ tab: "all", q }), "data-nav": true, class: "search-link" }, text);
}

class Entry extends HTMLElement {
  /** Load and show entry `id` (`nav`: how to move, nav.mjs). */
  async show(api, signedIn, id, nav = pageNav) {
    this.api = api;
    this.signedIn = signedIn;
    this.nav = nav;
    nav.title(`Entry · Trailkeep console`);
    const back = h("a", { href: nav.href({}), "data-nav": true, class: "back" }, "← Back to the log");
    back.addEventListener("click", (event) => {
      // Came from the log in this tab: going back keeps its search, page and scroll.
      if (nav.state()?.fromLog) {
        event.preventDefault();
        nav.back();
      }
    });
    const status = h("p", { role: "status" }, "Loading the entry…");
    replace(this, back, status);
    let entry;
    try {
      entry = await api.json(`/events/${encodeURIComponent(id)}`);
    } catch (error) {
      replace(status);
      replace(this, back, h("p", { role: "alert", class: "error" },
        error instanceof ApiError && error.status === 404 ? `No entry ${id} in this app.` : messageOf(error, signedIn)));
      return;
    }
    nav.title(`${entry.action ?? "Erased entry"} · Trailkeep console`);
    replace(this, back, this.render(entry));
  }

  render(entry) {
    const heading = h("h2", { tabindex: "-1" }, entry.erased ? `Erased entry, seq ${entry.seq}` : entry.action);
    queueMicrotask(() => heading.focus());
    const fields = [
      ...field("Id", h("code", {}, entry.id)),
      ...field("Seq", String(entry.seq)),
      ...field("Time", timeOf(entry.time), h("span", { class: "muted" }, ` (${entry.time})`)),
    ];
    if (entry.erased) {
      fields.push(...field("Erased by", entry.erased_by ?? ""));
    } else {
      fields.push(
        ...field("Action", entry.action, " ", searchLink(this.nav, "Search this action", term("action", entry.action))),
        ...field("Kind", entry.kind),
        ...field("Actor", actorText(entry.actor), entry.actor?.role ? ` · role ${entry.actor.role}` : "",
          " ", searchLink(this.nav, "Search this actor", term("actor", entry.actor?.id ?? ""))),
        ...field("Target", entry.target ? [targetText(entry.target), " ",
          searchLink(this.nav, "Search this target", term("target", targetText(entry.target)))] : h("span", { class: "muted" }, "none")),
        ...Object.entries(entry.context ?? {}).map(([k, v]) => field(`Context: ${k}`, String(v))).flat(),
        ...field("App", h("code", {}, entry.app_id)),
      );
    }
    fields.push(...field("Leaf hash", h("code", { class: "hash" }, entry.leaf_hash)));
    const parts = [heading, h("dl", { class: "fields" }, fields)];
    if (!entry.erased) {
      parts.push(h("section", { "aria-labelledby": "metadata-title" },
        h("h3", { id: "metadata-title" }, "Metadata"),
        Object.keys(entry.metadata ?? {}).length ? jsonTree(entry.metadata) : h("p", { class: "muted" }, "None.")));
      if (Array.isArray(entry.changes) && entry.changes.length) {
        parts.push(h("section", { "aria-labelledby": "changes-title" },
          h("h3", { id: "changes-title" }, "Changes"),
          h("table", { class: "changes" },
            h("thead", {}, h("tr", {}, ["Field", "Old", "", "New"].map((n) => h("th", { scope: "col" }, n)))),
            h("tbody", {}, entry.changes.map((c) => h("tr", {},
              h("td", {}, h("code", {}, c.path)), h("td", { class: "old" }, side(c, "old")),
              h("td", { "aria-hidden": "true" }, "→"), h("td", { class: "new" }, side(c, "new"))))))));
      }
    }
    const result = h("div", { class: "verdict", role: "status", "aria-live": "polite", "data-testid": "verdict" });
    const button = h("button", { type: "button" }, "Verify");
    button.addEventListener("click", () => this.verify(entry, button, result));
    parts.push(h("section", { class: "card", "aria-labelledby": "verify-title" },
      h("h3", { id: "verify-title" }, "Proof"),
      h("p", { class: "help" }, "Checks, in this browser, that the entry is in the log that the server signed: its hash, ",
        "the path to the signed root, and the signature, with the checkpoint key this page pinned when it started (at sign-in, in the console)."),
      button, result));
    return h("article", { class: "entry" }, parts);
  }

  async verify(entry, button, result) {
    button.disabled = true;
    replace(result, "Verifying…");
    result.className = "verdict";
    try {
      const verifier = await parseVerifierKey(this.signedIn.checkpointKey);
      const proven = await this.proven(entry.id);
      if (proven.entry.id !== entry.id) throw new VerifyFailure("entry", "the server proved another entry");
      const done = await verifyProven(proven, verifier, this.api.app);
      result.className = "verdict ok";
      replace(result, h("strong", {}, "Verified"), `: seq ${done.seq} is in the log of ${done.treeSize} entries`,
        h("dl", { class: "fields" },
          ...field("Tree size", String(done.treeSize)),
          ...field("Root", h("code", { class: "hash" }, done.root)),
          ...field("Signer", h("code", {}, done.signer)),
          ...field("Origin", h("code", {}, done.origin)),
          ...(done.erased ? field("Note", "an erased entry: its leaf hash is taken as recorded") : [])));
    } catch (error) {
      result.className = "verdict bad";
      const what = error instanceof VerifyFailure ? `Not verified (${error.step}): ` : "Could not verify: ";
      replace(result, h("strong", {}, what), error.message);
    } finally {
      button.disabled = false;
    }
  }

  /** The entry with its proof; a checkpoint newer than the entry comes within a second or two. */
  async proven(id) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.api.json(`/events/${encodeURIComponent(id)}`, [["proof", "true"]]);
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 503 || attempt >= 4) throw error;
        await new Promise((done) => setTimeout(done, 1000 * (error.retryAfter || 1)));
      }
    }
  }
}

customElements.define("tk-entry", Entry);
