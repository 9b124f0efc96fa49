// What the settings areas share: a confirmation in a native modal <dialog> (keyboard: Tab
// between its two buttons, Escape cancels, Cancel has the focus first so that Enter never
// destroys anything by accident), the panel that shows a secret the server hands out once, and
// small builders for labelled fields and tables. Every value shown is text, never markup.

import { h, replace, timeOf } from "./dom.mjs";

let ids = 0;

/** A fresh element id, for labels and descriptions. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** Ask before a change that cannot be undone; resolves true when the person confirms. */
export function confirmAction(question, detail, verb) {
  const title = uid("confirm-title");
  const said = uid("confirm-detail");
  const before = document.activeElement;
  return new Promise((resolve) => {
    const cancel = h("button", { type: "button", class: "quiet" }, "Cancel");
    const ok = h("button", { type: "button", class: "danger" }, verb);
    const dialog = h("dialog", {
      class: "confirm", "aria-labelledby": title, "aria-describedby": said, "data-testid": "confirm",
    },
      h("h2", { id: title }, question),
      h("p", { id: said }, detail),
      h("div", { class: "actions" }, cancel, ok));
    cancel.addEventListener("click", () => dialog.close("cancel"));
    ok.addEventListener("click", () => dialog.close("ok"));
    // Escape closes a modal dialog with an empty return value: a cancel.
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (before instanceof HTMLElement && before.isConnected) before.focus();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** The panel for a secret shown this once (a key, a webhook's signing secret). */
export function shownOnce(title, secret, about, onDone) {
  const heading = uid("once");
  const value = h("code", { class: "secret", "data-testid": "secret" }, secret);
  const status = h("span", { class: "muted", role: "status" });
  const copy = h("button", { type: "button", class: "quiet" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret);
      replace(status, "Copied.");
    } catch {
      // No clipboard (an insecure origin, a refused permission): the text can still be selected.
      getSelection()?.selectAllChildren(value);
      replace(status, "Copying failed: the secret is selected, copy it with the keyboard.");
    }
  });
  const panel = h("section", {
    class: "once", "aria-labelledby": heading, tabindex: "-1", "data-testid": "shown-once",
  },
    h("h3", { id: heading }, title),
    h("p", {}, h("strong", {}, "Shown once: "),
      "store it now. The server keeps only a hash or a sealed copy and cannot show it again."),
    h("p", {}, value),
    about ? h("p", { class: "help" }, about) : null,
    h("div", { class: "actions" }, copy,
      h("button", { type: "button", class: "quiet", onclick: () => onDone() }, "I have stored it"),
      status));
  return panel;
}

/** A labelled field: `control` gets an id, the label and the help point at it. */
export function field(label, control, help = null) {
  const id = control.id || uid("field");
  control.id = id;
  let helpNode = null;
  if (help) {
    helpNode = h("p", { class: "help", id: `${id}-help` }, help);
    control.setAttribute("aria-describedby", `${id}-help`);
  }
  return h("div", { class: "field" }, h("label", { for: id }, label), control, helpNode);
}

/** A table of `rows` (arrays of cells) under `columns`, captioned for screen readers. */
export function table(caption, columns, rows, testid) {
  return h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": caption },
    h("table", { class: "list", "data-testid": testid },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows.map((cells) => h("tr", {},
        cells.map((cell, i) => h("td", { "data-label": columns[i] }, cell)))))));
}

/** A stored time, or a dash when there is none. */
export function when(text) {
  return text ? timeOf(text) : "—";
}

/** A subject (of a hold, an erasure) as a person reads it. */
export function subjectText(subject) {
  if (!subject) return "";
  if (subject.all) return "the whole app";
  if (subject.actor_id !== undefined) return `actor ${subject.actor_id}`;
  if (subject.target) return `target ${subject.target.type}/${subject.target.id}`;
  if (subject.erased) return "an erased subject (named only by its HMAC)";
  if (Array.isArray(subject.seqs)) return `seqs ${subject.seqs.join(", ")}`;
  return JSON.stringify(subject);
}

/**
 * The subject fields of a hold or an erasure form: whose entries (a select), and the value.
 * `kinds` lists what may be chosen: "actor", "target", "all" (holds), "seqs" (erasures).
 */
export function subjectFields(kinds) {
  const labels = {
    actor: "An actor (by id)", target: "A target (type/id)", all: "The whole app",
    seqs: "Entries by seq",
  };
  const kind = h("select", { name: "kind" },
    kinds.map((name) => h("option", { value: name }, labels[name])));
  const value = h("input", { name: "value", autocomplete: "off", spellcheck: "false" });
  const help = "An actor id (user_42), a target as type/id (order/ord_9), or seqs (3, 4, 9).";
  const sync = () => {
    value.disabled = kind.value === "all";
    value.required = kind.value !== "all";
  };
  kind.addEventListener("change", sync);
  sync();
  const read = () => {
    const text = value.value.trim();
    if (kind.value === "all") return { all: true };
    if (kind.value === "actor") return { actor_id: text };
    if (kind.value === "seqs") {
      const seqs = text.split(/[\s,]+/).filter(Boolean).map(Number);
      if (!seqs.length || seqs.some((n) => !Number.isInteger(n) || n < 0)) {
        throw new Error("Seqs: whole numbers from 0, separated by commas or spaces.");
      }
      return { seqs };
    }
    const slash = text.indexOf("/");
    if (slash < 1 || slash === text.length - 1) {
      throw new Error("A target is type/id, e.g. order/ord_9.");
    }
    return { target: { type: text.slice(0, slash), id: text.slice(slash + 1) } };
  };
  return { nodes: [field("Whose entries", kind), field("Subject", value, help)], read };
}
