// The console's one way to call the API: same origin (or, embedded in an app's page, the
// Trailkeep server the element names), the credential as a bearer token, and problem documents
// (RFC 9457) turned into errors that say what the server said.

/** A failed call: `status`, the problem's `code`, and its `detail` as the message. */
export class ApiError extends Error {
  constructor(status, code, detail, retryAfter = null) {
    super(detail);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** An API client for one app and one credential. */
export class Api {
  constructor(signedIn) {
    this.app = signedIn.app;
    this.credential = signedIn.credential;
    this.server = signedIn.server ?? location.origin;
  }

  /** `/v1/apps/{app}` + `path`, with query parameters given as `[name, value]` pairs. */
  url(path, params = []) {
    const url = new URL(`/v1/apps/${encodeURIComponent(this.app)}${path}`, this.server);
    for (const [name, value] of params) url.searchParams.append(name, value);
    return url;
  }

  /** The raw response of a GET; an ApiError when it is not a 2xx. */
  async fetch(path, params = [], init = {}) {
    const response = await fetch(this.url(path, params), {
      ...init,
      headers: {
        Authorization: `Bearer ${this.credential}`,
        // A person reads through the console, whatever signed in: the server records the read
        // (a session's reads are recorded anyway; a key's only when it is said).
        "Trailkeep-Reader": "person",
        ...(init.headers ?? {}),
      },
      cache: "no-store",
      credentials: "omit",
    });
    if (!response.ok) throw await problemOf(response);
    return response;
  }

  /** A GET's JSON. */
  async json(path, params = []) {
    return (await this.fetch(path, params)).json();
  }

  /** A GET's text. */
  async text(path, params = []) {
    return (await this.fetch(path, params)).text();
  }

  /** A change (POST, PATCH, DELETE) with an optional JSON body; the answer's JSON. */
  async send(method, path, body = undefined) {
    const init = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "Content-Type": "application/json" };
    }
    return (await this.fetch(path, [], init)).json();
  }
}

/** The problem document of a failed answer, as an ApiError. */
export async function problemOf(response) {
  let code = "error";
  let detail = `${response.status} ${response.statusText}`;
  try {
    const problem = await response.json();
    code = typeof problem.code === "string" ? problem.code : code;
    detail = typeof problem.detail === "string" ? problem.detail : detail;
  } catch {
    // Not a problem document (a proxy's page): the status line says enough.
  }
  const retry = Number(response.headers.get("Retry-After"));
  return new ApiError(response.status, code, detail, Number.isFinite(retry) ? retry : null);
}

/** The server's checkpoint verifier key, to pin at sign-in. */
export async function checkpointKey(server = location.origin) {
  const url = new URL("/v1/checkpoint-key", server);
  const response = await fetch(url, { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw await problemOf(response);
  return (await response.text()).trim();
}
