// The console's search syntax: qualifiers typed in the search box, turned into the list API's
// query parameters. Pure: no DOM, no fetch, no clock (tests import it in a page and assert).
//
//   action:order.refund   action:order.*   -action:audit.read   actor:user_42
//   target:order/ord_9    target_type:order   kind:admin   changed:price   changed:/address/city
//   since:2026-11-01      until:2026-11-02 (dates are UTC; `until:DATE` includes that whole day)
//
// Values with spaces are quoted: actor:"Ada Lovelace". Terms combine with AND; several
// `action:` terms are any of them (OR), as the API's repeated `action` is.

/** The qualifiers the box takes, for completion and the help text. */
export const QUALIFIERS = Object.freeze([
  "action", "actor", "target", "target_type", "kind", "changed", "since", "until",
]);

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Split the box's text into terms: `[-]name:value` or a bare word; quotes keep spaces. Each
 * term has `start` and `end`, its place in the text.
 */
export function tokenize(text) {
  const terms = [];
  const pattern = /(-?)(?:([A-Za-z_]+):)?(?:"((?:[^"\\]|\\.)*)"?|(\S+))/g;
  for (const match of String(text).matchAll(pattern)) {
    const [raw, minus, name, quoted, plain] = match;
    const value = quoted !== undefined ? quoted.replace(/\\(.)/g, "$1") : plain ?? "";
    terms.push({
      raw, negated: minus === "-", name: name ? name.toLowerCase() : null, value,
      start: match.index, end: match.index + raw.length, // where it is typed (for completion)
    });
  }
  return terms;
}

/** `since:` as an instant: a date is that day's first microsecond (UTC). */
function sinceOf(value) {
  if (DATE.test(value) && validDate(value)) return `${value}T00:00:00Z`;
  if (DATE_TIME.test(value)) return value;
  return null;
}

/** `until:` as an instant: a date includes that whole day (UTC), to its last microsecond. */
function untilOf(value) {
  if (DATE.test(value) && validDate(value)) return `${value}T23:59:59.999999Z`;
  if (DATE_TIME.test(value)) return value;
  return null;
}

function validDate(text) {
  const [y, m, d] = text.split("-").map(Number);
  const day = new Date(Date.UTC(y, m - 1, d));
  return day.getUTCFullYear() === y && day.getUTCMonth() === m - 1 && day.getUTCDate() === d;
}

/** `changed:price` is the pointer `/price`; `changed:address/city` is `/address/city`. */
function pointerOf(value) {
  return value.startsWith("/") ? value : `/${value}`;
}

/**
 * Parse the box's text into the list API's parameters.
 *
 * Returns `{params, errors}`: `params` a list of `[name, value]` pairs (`action` may repeat),
 * `errors` one sentence per term that cannot be used (the search is not run while any remain).
 */
export function parseQuery(text) {
  const params = [];
  const errors = [];
  const single = new Map();
  const put = (name, value, term) => {
    if (single.has(name) && single.get(name) !== value) {
      errors.push(`${term.raw}: only one ${name} at a time`);
      return;
    }
    if (!single.has(name)) params.push([name, value]);
    single.set(name, value);
  };
  for (const term of tokenize(text)) {
    if (term.name === null && /^[A-Za-z_]+:$/.test(term.value)) {
      errors.push(`${term.raw}: give a value after the colon`);
      continue;
    }
    if (term.name === null) {
      errors.push(`${term.raw}: use a qualifier, such as action:${term.value}, actor:${term.value} or target:TYPE/${term.value}`);
      continue;
    }
    if (term.value === "") {
      errors.push(`${term.raw}: give a value after the colon`);
      continue;
    }
    if (term.negated && term.name !== "action") {
      errors.push(`${term.raw}: only action can be excluded (-action:...)`);
      continue;
    }
    switch (term.name) {
      case "action":
        if (term.value.endsWith("*")) {
          const prefix = term.value.slice(0, -1);
          if (term.negated) errors.push(`${term.raw}: exclude exact actions, not a prefix`);
          else if (prefix.includes("*")) errors.push(`${term.raw}: * only at the end`);
          else put("action_prefix", prefix, term);
        } else if (term.value.includes("*")) {
          errors.push(`${term.raw}: * only at the end`);
        } else {
          params.push([term.negated ? "exclude_action" : "action", term.value]);
        }
        break;
      case "actor":
        put("actor", term.value, term);
        break;
      case "target": {
        const slash = term.value.indexOf("/");
        if (slash > 0) {
          put("target_type", term.value.slice(0, slash), term);
          put("target_id", term.value.slice(slash + 1), term);
        } else {
          put("target_id", term.value.replace(/^\//, ""), term);
        }
        break;
      }
      case "target_type":
        put("target_type", term.value, term);
        break;
      case "kind":
        if (term.value === "admin" || term.value === "user") put("kind", term.value, term);
        else errors.push(`${term.raw}: kind is admin or user`);
        break;
      case "changed":
        put("changed_path", pointerOf(term.value), term);
        break;
      case "since": {
        const at = sinceOf(term.value);
        if (at === null) errors.push(`${term.raw}: a date (2026-11-01) or an RFC 3339 time`);
        else put("since", at, term);
        break;
      }
      case "until": {
        const at = untilOf(term.value);
        if (at === null) errors.push(`${term.raw}: a date (2026-11-02) or an RFC 3339 time`);
        else put("until", at, term);
        break;
      }
      default:
        errors.push(`${term.raw}: unknown qualifier (${QUALIFIERS.join(", ")})`);
    }
  }
  const since = single.get("since");
  const until = single.get("until");
  if (since && until && Date.parse(since) > Date.parse(until)) {
    errors.push("since: is after until");
  }
  return { params, errors };
}

/** One term as typed: `name:value`, the value quoted when it holds a space or a quote. */
export function term(name, value, negated = false) {
  const text = String(value);
  const plain = text !== "" && !/[\s"\\]/.test(text);
  const shown = plain ? text : `"${text.replace(/(["\\])/g, "\\$1")}"`;
  return `${negated ? "-" : ""}${name}:${shown}`;
}

/** The tabs: which `kind` each reads (All reads both). */
export const TABS = Object.freeze({
  admin: { label: "Administrator actions", kind: "admin" },
  user: { label: "User actions", kind: "user" },
  all: { label: "All", kind: null },
});

/**
 * The list API's parameters for a tab and a search: the tab's kind joins the search's terms;
 * a `kind:` that contradicts the tab is an error rather than an empty page.
 */
export function searchParams(tab, text) {
  const { params, errors } = parseQuery(text);
  const wanted = (TABS[tab] ?? TABS.all).kind;
  const given = params.find(([name]) => name === "kind");
  if (wanted !== null) {
    if (given && given[1] !== wanted) {
      errors.push(`kind:${given[1]}: this tab shows ${TABS[tab].label.toLowerCase()}; use All`);
    } else if (!given) {
      params.push(["kind", wanted]);
    }
  }
  return { params, errors };
}
