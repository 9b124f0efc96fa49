/*! Trailkeep browser SDK: record audit-log entries from a web page.
 *
 * This ES module is the only source. Every Trailkeep node serves it as-is at
 * /sdk/trailkeep.mjs, and wrapped as a classic script (which sets window.trailkeep) at
 * /sdk/trailkeep.js: the server drops the final `export` line and wraps the rest in a
 * function. So this file must keep exactly one `export` statement, as its last line, and use
 * no other module-only syntax (no imports, no module metadata, no top-level `await`).
 *
 * Guide: docs/sdk-browser.md in the Trailkeep repository.
 */

const VERSION = "0.1.0";

// The server's rules (src/trailkeep/model.py and api/context.py), so that the SDK refuses
// exactly what the server would refuse, before anything is sent.
const ACTION_PATTERN = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const STRING_LIMITS = {
  action: 128,
  targetType: 64,
  targetId: 256,
  project: 128,
  server: 128,
  requestId: 128,
};
const API_FIELDS = {
  action: "action",
  targetType: "target_type",
  targetId: "target_id",
  metadata: "metadata",
  project: "project",
  server: "server",
  requestId: "request_id",
  changes: "changes",
  before: "before",
  after: "after",
};
const SERVER_OWNED = new Set([
  "time", "kind", "seq", "id", "leaf_hash", "leafHash", "app_id", "appId", "context", "ip",
  "user_agent", "userAgent", "forwarded_by", "forwardedBy",
]);
const METADATA_MAX_DEPTH = 8;
const METADATA_MAX_BYTES = 10240;
const SINGLE_BODY_MAX = 1 << 20;
const BATCH_BODY_MAX = 16 << 20;
const BATCH_MAX_ENTRIES = 1000;
const EXACT_INTEGER_LIMIT = 2 ** 53;
const STATUS = {
  invalid_request: 400,
  actor_not_allowed: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  idempotency_conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
};

// Delivery. Browsers allow 64 KiB of keepalive bodies in flight per page, in total.
const KEEPALIVE_QUOTA = 65536;
const MAX_RETRIES = 5;
const DEFAULT_BACKOFF_MS = 300;
const BACKOFF_CAP_MS = 10000;
const RETRY_AFTER_MAX_MS = 60000;
const DEFAULT_TIMEOUT_MS = 30000;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const encoder = new TextEncoder();
let keepaliveInFlight = 0;
let defaultClient = null;

/** Every failure the SDK reports: refused input, server problems and delivery failures. */
class TrailkeepError extends Error {
  constructor(code, status, detail, options = {}) {
    super(`${detail} (${code}${status ? `, HTTP ${status}` : ""})`, options.cause ? { cause: options.cause } : undefined);
    this.name = "TrailkeepError";
    this.code = code;        // the API's stable code, or network_error / session_unavailable / ...
    this.status = status;    // the HTTP status, or what the server would answer; 0 if none
    this.detail = detail;
    this.problem = options.problem ?? null;        // the server's problem document, if any
    this.retryAfter = options.retryAfter ?? null;  // seconds, from a 429 or 503
  }
}

function refuse(code, detail) {
  return new TrailkeepError(code, STATUS[code] ?? 0, detail);
}

function isWellFormed(text) {
  return typeof text.isWellFormed === "function" ? text.isWellFormed() : !LONE_SURROGATE.test(text);
}

function codePoints(text) {
  // The server counts characters (code points), not UTF-16 units: "😀" is one character.
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function utf8Length(text) {
  return encoder.encode(text).length;
}

/** RFC 8785 (JCS) canonical JSON of a JSON value, as the server computes it for size limits. */
function canonicalize(value) {
  switch (typeof value) {
    case "string":
      if (!isWellFormed(value)) throw new TypeError("a string holds a lone surrogate (not valid Unicode)");
      return JSON.stringify(value); // RFC 8785 §3.2.2.2 is ECMAScript's own string escaping
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`${value} is not a JSON number`);
      return JSON.stringify(value); // ECMAScript number formatting, as RFC 8785 §3.2.2.3 asks
    case "boolean":
      return value ? "true" : "false";
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) return `[${value.map(canonicalize).join(",")}]`;
      // Array.prototype.sort compares UTF-16 code units: the order RFC 8785 §3.2.3 asks for.
      const keys = Object.keys(value).sort();
      return `{${keys.map((key) => `${canonicalize(key)}:${canonicalize(value[key])}`).join(",")}}`;
    }
    default:
      throw new TypeError(`a ${typeof value} is not a JSON value`);
  }
}

function checkString(name, value, where) {
  if (typeof value !== "string") throw refuse("invalid_request", `${where}${API_FIELDS[name]}: expected a string`);
  if (!isWellFormed(value)) {
    throw refuse("invalid_request", `${where}${API_FIELDS[name]}: not valid Unicode (a lone surrogate)`);
  }
  const length = codePoints(value);
  const max = STRING_LIMITS[name];
  if (length < 1 || length > max) {
    throw refuse("invalid_request", `${where}${API_FIELDS[name]}: 1 to ${max} characters, got ${length}`);
  }
}

// Walk the metadata as the server does (model._depth): depth, exact integers, valid strings.
function checkMetadataValues(value, name) {
  const stack = [[value, 0]];
  let deepest = 0;
  while (stack.length) {
    const [item, level] = stack.pop();
    if (item !== null && typeof item === "object") {
      deepest = Math.max(deepest, level + 1);
      if (deepest > METADATA_MAX_DEPTH) {
        throw refuse("invalid_request", `${name}: nesting deeper than ${METADATA_MAX_DEPTH} levels`);
      }
      const children = Array.isArray(item) ? item : Object.values(item);
      if (!Array.isArray(item)) {
        for (const key of Object.keys(item)) {
          if (!isWellFormed(key)) throw refuse("invalid_request", `${name}: a key is not valid Unicode (a lone surrogate)`);
        }
      }
      for (const child of children) stack.push([child, level + 1]);
    } else if (typeof item === "string") {
      if (!isWellFormed(item)) throw refuse("invalid_request", `${name}: a string is not valid Unicode (a lone surrogate)`);
    } else if (typeof item === "number") {
      if (Number.isInteger(item) && Math.abs(item) >= EXACT_INTEGER_LIMIT && Math.abs(item) < 1e21) {
        throw refuse(
          "invalid_request",
          `${name}: ${item} is an integer beyond ±(2^53-1), which JSON cannot carry exactly; send it as a string`,
        );
      }
    }
  }
}

function normalizeMetadata(metadata, where, maxBytes) {
  const name = `${where}metadata`;
  if (typeof metadata !== "object" || Array.isArray(metadata)) {
    throw refuse("invalid_request", `${name}: expected an object`);
  }
  let text;
  try {
    // What is sent is what JSON.stringify writes (toJSON applies, undefined members drop out),
    // except that NaN and Infinity, which it would silently turn into null, are refused.
    text = JSON.stringify(metadata, (key, value) => {
      if (typeof value === "number" && !Number.isFinite(value)) {
        throw new TypeError(`${value} is not a JSON number`);
      }
      return value;
    });
  } catch (cause) {
    throw refuse("invalid_request", `${name}: cannot be sent as JSON: ${cause.message}`);
  }
  const value = text === undefined ? undefined : JSON.parse(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw refuse("invalid_request", `${name}: expected an object`);
  }
  checkMetadataValues(value, name);
  const size = utf8Length(canonicalize(value));
  if (size > maxBytes) {
    throw refuse("payload_too_large", `${name}: canonical encoding is ${size} bytes; the limit is ${maxBytes}`);
  }
  return value;
}

// One entry as the caller gives it (camelCase) → the API's flat body (snake_case).
function toBody(entry, where, maxBytes) {
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    const name = where ? where.slice(0, -1) : "entry";
    throw refuse("invalid_request", `${name}: expected an object such as {action: "order.refund"}`);
  }
  for (const key of Object.keys(entry)) {
    if (key === "actor") {
      throw refuse("actor_not_allowed", `${where}actor: the actor is taken from the verified session, not from the entry`);
    }
    if (Object.hasOwn(API_FIELDS, key)) continue;
    if (SERVER_OWNED.has(key)) throw refuse("invalid_request", `${where}${key}: set by the server; remove it`);
    const camel = key.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase());
    const hint = Object.hasOwn(API_FIELDS, camel) ? `; did you mean ${camel}?` : "";
    throw refuse("invalid_request", `${where}${key}: unknown field${hint}`);
  }
  const body = {};
  if (entry.action === undefined || entry.action === null) {
    throw refuse("invalid_request", `${where}action: required, e.g. "order.refund"`);
  }
  checkString("action", entry.action, where);
  if (!ACTION_PATTERN.test(entry.action)) {
    throw refuse(
      "invalid_request",
      `${where}action: letters, digits, _ and - in dot-separated segments (e.g. order.refund), got ${JSON.stringify(entry.action)}`,
    );
  }
  body.action = entry.action;
  for (const name of ["targetType", "targetId", "project", "server", "requestId"]) {
    const value = entry[name];
    if (value === undefined || value === null) continue;
    checkString(name, value, where);
    body[API_FIELDS[name]] = value;
  }
  if ((body.target_type === undefined) !== (body.target_id === undefined)) {
    throw refuse("invalid_request", `${where}target_type, target_id: give both or neither`);
  }
  if (entry.metadata !== undefined && entry.metadata !== null) {
    body.metadata = normalizeMetadata(entry.metadata, where, maxBytes);
  }
  // What changed (DESIGN §8) passes through as given: the server validates the pointers,
  // computes changes from before/after, and counts them within the metadata limit.
  if (entry.changes !== undefined && entry.changes !== null) {
    if (!Array.isArray(entry.changes)) {
      throw refuse("invalid_request", `${where}changes: expected an array of {path, old, new}`);
    }
    body.changes = entry.changes;
  }
  for (const name of ["before", "after"]) {
    const value = entry[name];
    if (value === undefined || value === null) continue;
    if (typeof value !== "object" || Array.isArray(value)) {
      throw refuse("invalid_request", `${where}${name}: expected an object`);
    }
    body[name] = value;
  }
  return body;
}

function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // randomUUID only exists in secure contexts; getRandomValues everywhere.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function backoff(baseMs, retry) {
  // Exponential with "equal jitter": half the step is fixed, half random, so retries from
  // many pages spread out without ever coming back at once.
  const step = Math.min(BACKOFF_CAP_MS, baseMs * 2 ** retry);
  return step / 2 + Math.random() * (step / 2);
}

function retryAfterMs(response) {
  const value = response.headers.get("Retry-After");
  if (value === null) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

function problemOf(response, text) {
  let problem = null;
  if ((response.headers.get("Content-Type") || "").includes("json")) {
    try {
      problem = JSON.parse(text);
    } catch {
      problem = null;
    }
  }
  const status = response.status;
  const code = (problem && typeof problem.code === "string" && problem.code) || "http_error";
  const detail = (problem && typeof problem.detail === "string" && problem.detail)
    || `the server answered HTTP ${status} ${response.statusText}`.trim();
  const retryAfter = retryAfterMs(response);
  return new TrailkeepError(code, status, detail, {
    problem,
    retryAfter: retryAfter === null ? null : retryAfter / 1000,
  });
}

function checkOptions(options) {
  if (options === null || typeof options !== "object") {
    throw new TrailkeepError("invalid_config", 0, "init: expected {endpoint, app, session}");
  }
  const { endpoint, app, session } = options;
  let url;
  try {
    url = new URL(endpoint);
  } catch {
    url = null;
  }
  if (typeof endpoint !== "string" || url === null || !/^https?:$/.test(url.protocol)) {
    throw new TrailkeepError("invalid_config", 0, `init: endpoint must be an http(s) URL such as "https://audit.example.com", got ${JSON.stringify(endpoint)}`);
  }
  if (typeof app !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(app)) {
    throw new TrailkeepError("invalid_config", 0, `init: app must be the app's id (app_...), got ${JSON.stringify(app)}`);
  }
  if (typeof session !== "function" && (typeof session !== "string" || !session)) {
    throw new TrailkeepError("invalid_config", 0, "init: session must be a token, or a function returning one");
  }
  const maxRetries = options.maxRetries ?? MAX_RETRIES;
  if (!Number.isInteger(maxRetries) || maxRetries < 0 || maxRetries > MAX_RETRIES) {
    throw new TrailkeepError("invalid_config", 0, `init: maxRetries must be an integer from 0 to ${MAX_RETRIES}`);
  }
  for (const name of ["backoffMs", "timeoutMs", "metadataMaxBytes"]) {
    const value = options[name];
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
      throw new TrailkeepError("invalid_config", 0, `init: ${name} must be a positive number`);
    }
  }
  return {
    base: `${endpoint.replace(/\/+$/, "")}/v1/apps/${encodeURIComponent(app)}`,
    endpoint,
    session,
    maxRetries,
    backoffMs: options.backoffMs ?? DEFAULT_BACKOFF_MS,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    metadataMaxBytes: options.metadataMaxBytes ?? METADATA_MAX_BYTES,
  };
}

async function sessionToken(session) {
  let token;
  try {
    token = typeof session === "function" ? await session() : session;
  } catch (cause) {
    throw new TrailkeepError("session_unavailable", 0, `the session function failed: ${cause?.message ?? cause}`, { cause });
  }
  if (typeof token !== "string" || !token || /\s/.test(token)) {
    throw new TrailkeepError("session_unavailable", 0, "the session must be a token string (or a function returning one)");
  }
  return token;
}

// One HTTP attempt. Rejects (like fetch) when no complete response arrived.
async function attempt(config, url, body, size, token, key) {
  const keepalive = keepaliveInFlight + size < KEEPALIVE_QUOTA;
  if (keepalive) keepaliveInFlight += size;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no answer in ${config.timeoutMs} ms`)), config.timeoutMs);
  try {
    const response = await globalThis.fetch(url, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
      keepalive, // lets the entry outlive the page (unload, navigation)
      signal: controller.signal,
      headers: {
        Authorization: `Bearer ${token}`,
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        Accept: "application/json",
      },
      body,
    });
    // Read the whole body here: a response cut off midway is a failed attempt, to retry.
    const text = await response.text();
    return { response, text };
  } finally {
    clearTimeout(timer);
    if (keepalive) keepaliveInFlight -= size;
  }
}

// Send one write with one Idempotency-Key, retrying what may be retried; resolve to the JSON.
async function deliver(config, path, payload, limit) {
  const body = JSON.stringify(payload);
  const size = utf8Length(body);
  if (size > limit) throw refuse("payload_too_large", `the body is over the ${limit}-byte limit`);
  const url = `${config.base}${path}`;
  const key = newIdempotencyKey(); // the same for every retry: the server appends once
  for (let retry = 0; ; retry += 1) {
    const token = await sessionToken(config.session); // per attempt, so it can refresh
    let outcome;
    try {
      outcome = await attempt(config, url, body, size, token, key);
    } catch (cause) {
      if (retry >= config.maxRetries) {
        const origin = globalThis.location ? globalThis.location.origin : "this page";
        throw new TrailkeepError(
          "network_error",
          0,
          `could not reach ${config.endpoint} (${retry + 1} attempts): a network error, or ${origin} is not among the app's allowed origins (${cause?.message ?? cause})`,
          { cause },
        );
      }
      await sleep(backoff(config.backoffMs, retry));
      continue;
    }
    const { response, text } = outcome;
    if (response.ok) {
      try {
        return JSON.parse(text);
      } catch (cause) {
        throw new TrailkeepError("invalid_response", response.status, "the server's answer is not JSON", { cause });
      }
    }
    const error = problemOf(response, text);
    const retryable = response.status === 429 || response.status >= 500;
    if (!retryable || retry >= config.maxRetries) throw error;
    let delay = backoff(config.backoffMs, retry);
    if (error.retryAfter !== null) {
      const wait = error.retryAfter * 1000;
      if (wait > RETRY_AFTER_MAX_MS) throw error;
      delay = wait + Math.random() * config.backoffMs; // honour it; jitter only on top
    }
    await sleep(delay);
  }
}

function makeClient(options) {
  const config = checkOptions(options);
  return Object.freeze({
    /** Record one entry; resolves to the stored entry. */
    async log(entry) {
      return deliver(config, "/events", toBody(entry, "", config.metadataMaxBytes), SINGLE_BODY_MAX);
    },
    /** Record up to 1,000 entries at once, all or none; resolves to the stored entries. */
    async logMany(entries) {
      if (!Array.isArray(entries) || entries.length < 1 || entries.length > BATCH_MAX_ENTRIES) {
        throw refuse("invalid_request", `events: expected an array of 1 to ${BATCH_MAX_ENTRIES} entries`);
      }
      const events = entries.map((entry, i) => toBody(entry, `events[${i}].`, config.metadataMaxBytes));
      const answer = await deliver(config, "/events/batch", { events }, BATCH_BODY_MAX);
      return answer.events;
    },
  });
}

function current() {
  if (defaultClient === null) {
    throw new TrailkeepError("not_initialized", 0, "call trailkeep.init({endpoint, app, session}) first");
  }
  return defaultClient;
}

/** Configure the SDK: {endpoint, app, session, maxRetries?, backoffMs?, timeoutMs?, metadataMaxBytes?}. */
function init(options) {
  const client = makeClient(options);
  defaultClient = client;
  return { audit: client };
}

const audit = Object.freeze({
  /** Record one entry with the client set up by init(); resolves to the stored entry. */
  async log(entry) {
    return current().log(entry);
  },
  /** Record up to 1,000 entries, all or none; resolves to the stored entries. */
  async logMany(entries) {
    return current().logMany(entries);
  },
});

const trailkeep = Object.freeze({ version: VERSION, init, audit, TrailkeepError, canonicalize });

export { trailkeep, trailkeep as default, init, audit, TrailkeepError, canonicalize };
