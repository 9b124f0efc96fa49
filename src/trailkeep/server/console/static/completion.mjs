// Completion in the search box, term by term: the qualifier names while a term has no colon,
// the app's known actions after `action:` (or `-action:`, or a bare word), `admin`/`user` after
// `kind:`. An ARIA 1.2 combobox: the box keeps focus and names the highlighted option with
// aria-activedescendant; arrows move, Enter or Tab accepts, Escape closes. Accepting replaces
// only the term at the caret, so the other terms stay as typed.

import { h, replace } from "./dom.mjs";
import { QUALIFIERS, term as termText, tokenize } from "./query.mjs";

const SHOWN = 20;
const PAGE = 1000;
// Only when an app has more actions than the first page: how long typing must pause before a
// prefix is asked for (each call is a recorded read, so not one per keystroke).
const DEBOUNCE_MS = 250;

/**
 * The app's actions, read once per sign-in and app (`GET /actions`, one recorded read) and
 * matched here as the person types: no request per keystroke. An app with more than a page of
 * actions also asks for the typed prefix, after a pause, and keeps each answer.
 */
export class KnownActions {
  constructor() {
    this.key = null;
    this.all = [];
    this.more = false;
    this.byPrefix = new Map();
  }

  /** Read the first page of the app's actions, unless this sign-in's are in hand already. */
  async load(api) {
    const key = `${api.app}\n${api.credential}`;
    if (this.key === key) return;
    Object.assign(this, { key, api, all: [], more: false, byPrefix: new Map() });
    try {
      const page = await api.json("/actions", [["limit", String(PAGE)]]);
      if (this.key !== key) return;
      this.all = page.data;
      this.more = page.next_after !== null;
    } catch {
      // Completion is a convenience: a reader who cannot list actions still searches.
      if (this.key === key) this.key = null;
    }
  }

  /** Known actions starting with `prefix` (any case); `later()` runs if more arrive. */
  matching(prefix, later) {
    const lower = prefix.toLowerCase();
    const found = new Set(this.all.filter((a) => a.toLowerCase().startsWith(lower)));
    if (this.more && prefix !== "") {
      const asked = this.byPrefix.get(prefix);
      if (Array.isArray(asked)) asked.forEach((a) => found.add(a));
      else if (asked === undefined) this.ask(prefix, later);
    }
    return [...found].sort();
  }

  ask(prefix, later) {
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      const key = this.key;
      this.byPrefix.set(prefix, null); // asked: not again while the answer is on its way
      try {
        const page = await this.api.json("/actions", [["prefix", prefix], ["limit", String(SHOWN)]]);
        if (this.key !== key) return;
        this.byPrefix.set(prefix, page.data);
        later();
      } catch {
        this.byPrefix.delete(prefix);
      }
    }, DEBOUNCE_MS);
  }
}

/**
 * What completes the term at `caret` in `text`: `{start, end, options}`, each option
 * `{label, insert, whole}` (`whole`: a finished term, not just a qualifier's name).
 */
export function suggestions(text, caret, actionsFor) {
  const here = tokenize(text).find((t) => t.start < caret && caret <= t.end);
  const start = here ? here.start : caret;
  const end = here ? here.end : caret;
  const typed = text.slice(start, caret);
  const options = [];
  const named = /^(-?)([A-Za-z_]+):"?(.*)$/.exec(typed);
  if (named) {
    const [, minus, rawName, value] = named;
    const name = rawName.toLowerCase();
    const negated = minus === "-";
    const values = name === "action" ? actionsFor(value)
      : name === "kind" && !negated ? ["admin", "user"].filter((k) => k.startsWith(value)) : [];
    for (const v of values) {
      if (v !== value) options.push({ label: termText(name, v, negated), insert: termText(name, v, negated), whole: true });
    }
  } else {
    const [, minus, word] = /^(-?)(.*)$/.exec(typed);
    const negated = minus === "-";
    // Only action can be left out (-action:...): the other names would make an error.
    for (const q of negated ? ["action"] : QUALIFIERS) {
      if (q.startsWith(word.toLowerCase())) options.push({ label: `${minus}${q}:`, insert: `${minus}${q}:`, whole: false });
    }
    if (word !== "") {
      for (const a of actionsFor(word)) {
        const insert = termText("action", a, negated);
        options.push({ label: insert, insert, whole: true });
      }
    }
  }
  return { start, end, options: options.slice(0, SHOWN) };
}

let made = 0;

/** The combobox behaviour on a search box: a listbox under it, and the keys of ARIA 1.2. */
export class Completer {
  /**
   * `input` is the box, `known` a KnownActions; `submit()` runs the search (after a finished
   * term is accepted by Enter or a click).
   */
  constructor(input, known, submit) {
    const id = `suggestions-${++made}`;
    Object.assign(this, { input, known, submit, active: -1, found: null });
    this.list = h("ul", { id, role: "listbox", class: "suggestions", "aria-label": "Suggestions", hidden: true });
    this.count = h("span", { class: "visually-hidden", role: "status" });
    for (const [name, value] of Object.entries({
      role: "combobox", "aria-autocomplete": "list", "aria-expanded": "false", "aria-controls": id,
    })) input.setAttribute(name, value);
    input.addEventListener("input", () => this.update(false));
    input.addEventListener("keydown", (event) => this.key(event));
    input.addEventListener("blur", () => this.close());
    // A click on an option must not take focus from the box first (that would close the list).
    this.list.addEventListener("mousedown", (event) => event.preventDefault());
    this.node = h("div", { class: "completion" }, this.list, this.count);
  }

  /** Work out the options for the term at the caret; `any`: even for an empty term. */
  update(any) {
    const caret = this.input.selectionStart ?? this.input.value.length;
    const found = suggestions(this.input.value, caret,
      (prefix) => this.known.matching(prefix, () => this.refresh()));
    const empty = found.start === found.end;
    if (!found.options.length || (empty && !any)) {
      this.close();
      return;
    }
    this.found = found;
    this.active = -1;
    this.render();
  }

  /** Arrived late (a prefix asked of the server): show it if the list is still wanted. */
  refresh() {
    // Inside the embed's shadow root the document's active element is the host element.
    if (this.input.getRootNode().activeElement === this.input) this.update(false);
  }

  render() {
    const { options } = this.found;
    replace(this.list, options.map((option, i) => h("li", {
      id: `${this.list.id}-${i}`, role: "option", "aria-selected": String(i === this.active),
      onclick: () => this.accept(i, true),
    }, option.label)));
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    if (this.active >= 0) {
      const option = this.list.children[this.active];
      this.input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    } else {
      this.input.removeAttribute("aria-activedescendant");
    }
    replace(this.count, `${options.length} ${options.length === 1 ? "suggestion" : "suggestions"}`);
  }

  close() {
    this.found = null;
    this.active = -1;
    this.list.hidden = true;
    replace(this.list);
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  key(event) {
    if (event.isComposing) return; // an input method's Enter or arrow is its own
    const open = this.found !== null;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!open) {
        this.update(true);
        if (!this.found) return;
      }
      const n = this.found.options.length;
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = this.active < 0 && step < 0 ? n - 1 : (this.active + step + n) % n;
      this.render();
    } else if (event.key === "Escape" && open) {
      event.preventDefault(); // a search box would clear its text on Escape
      this.close();
    } else if ((event.key === "Enter" || event.key === "Tab") && open && this.active >= 0) {
      const whole = this.found.options[this.active].whole;
      // Tab after a finished term moves on (to Search) as Tab does; after a name it stays.
      if (event.key === "Enter" || !whole) event.preventDefault();
      this.accept(this.active, event.key === "Enter");
    }
  }

  /** Put option `i` in place of the term at the caret; run the search if `run` and finished. */
  accept(i, run) {
    const { start, end, options } = this.found;
    const option = options[i];
    const text = this.input.value;
    const tail = text.slice(end);
    // A finished term at the end gets a space, ready for the next one; a term put in at a gap
    // before another gets one too, so that the two do not run together.
    const spaced = (option.whole && tail === "") || (start === end && /^\S/.test(tail));
    const insert = spaced ? `${option.insert} ` : option.insert;
    this.input.value = text.slice(0, start) + insert + tail;
    const caret = start + insert.length;
    this.input.setSelectionRange(caret, caret);
    this.close();
    if (!option.whole) this.update(true); // a qualifier's name: now its values
    else if (run) this.submit();
  }
}
