// Building DOM from data. Everything in the log is untrusted: it only ever becomes text nodes
// and attribute values, never markup: no HTML parsing sink anywhere in the console.

/**
 * `h("a", {href: "?q=x", class: "link"}, "text", child)`: an element with attributes and
 * children; strings become text nodes, null and false are left out, `on*` attributes that are
 * functions become listeners.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

// Controls and bidi overrides could hide or reorder what a value says on screen (a name that
// reads backwards, a target that looks like another): shown as visible escapes instead, as
// the CLI shows them (trailkeep.log.render.visible). Tab and newline stay.
const HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** Text with controls and bidi overrides made visible (`\u202e`). */
export function visible(text) {
  return String(text).replace(HIDDEN, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Append children (text for strings and numbers, nested arrays flattened). */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(visible(child)));
  }
  return node;
}

/** Replace a node's children. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

const local = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** An entry's time: the viewer's zone shown, the stored UTC time on hover and in `datetime`. */
export function timeOf(text) {
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) return h("span", {}, String(text));
  const utc = String(text).replace("T", " ").replace(/Z$/, " UTC");
  return h("time", { datetime: text, title: utc }, local.format(at));
}

/** The query string of the console's address with these parameters (empty ones dropped). */
export function hrefOf(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return `${location.pathname}${text ? `?${text}` : ""}`;
}

/** Go to a console address (a query string), as a new history entry. */
export function go(href, state = null) {
  history.pushState(state, "", href);
  window.dispatchEvent(new Event("tk-navigate"));
}
