// Export of the current search: the entries the tab and the search select, all of them (not
// only the page shown), through the API's export route, saved as a file.
//
// The credential is a bearer token, not a cookie, so a plain link could not carry it: the file
// is fetched (api.mjs, which says `Trailkeep-Reader: person`, so the export is recorded as this
// person's `audit.export`) and handed to the browser as a Blob. Chromium keeps a large Blob on
// disk rather than in memory; even so an export of millions of entries belongs to
// `trailkeep export`, which resumes and verifies (docs/console.md says so).

import { h, replace } from "./dom.mjs";

/** The formats offered: the route's `format`, the button's text, the file's extension. */
export const FORMATS = Object.freeze([
  { format: "ndjson", label: "NDJSON", ext: "ndjson" },
  { format: "csv", label: "CSV", ext: "csv" },
  { format: "ocsf", label: "OCSF", ext: "ocsf.ndjson" },
]);

/** `<app>-<yyyymmdd-hhmm>.<ext>`, the time in UTC, the app id kept to safe characters. */
export function fileName(app, ext, now = new Date()) {
  const two = (n) => String(n).padStart(2, "0");
  const stamp = `${now.getUTCFullYear()}${two(now.getUTCMonth() + 1)}${two(now.getUTCDate())}`
    + `-${two(now.getUTCHours())}${two(now.getUTCMinutes())}`;
  return `${String(app).replace(/[^A-Za-z0-9_-]/g, "_")}-${stamp}.${ext}`;
}

function sizeOf(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The export buttons and what they last did; `set()` tells them the current search. */
export class Exporter {
  constructor() {
    this.buttons = FORMATS.map(({ format, label, ext }) => h("button", {
      type: "button", class: "quiet", "data-format": format, "aria-label": `Export ${label}`,
      "aria-describedby": "export-status", onclick: () => this.run(format, label, ext),
    }, label));
    this.status = h("span", { id: "export-status", class: "muted", role: "status", "data-testid": "export-status" });
    this.node = h("div", { class: "export", role: "group", "aria-labelledby": "export-label" },
      h("span", { id: "export-label" }, "Export this search:"), " ", this.buttons, " ", this.status);
    this.busy = false;
  }

  /** The current search: its API client and list filters; `usable` false while it has errors. */
  set(api, filters, usable) {
    Object.assign(this, { api, filters, usable });
    this.enable();
  }

  enable() {
    for (const button of this.buttons) button.disabled = this.busy || !this.usable;
  }

  async run(format, label, ext) {
    if (this.busy || !this.usable) return;
    const { api, filters } = this;
    this.busy = true;
    this.enable();
    replace(this.status, `Exporting ${label}…`);
    try {
      const response = await api.fetch("/export", [...filters, ["format", format]]);
      const blob = await response.blob();
      const name = fileName(api.app, ext);
      save(blob, name);
      replace(this.status, `Saved ${name} (${sizeOf(blob.size)}).`);
    } catch (error) {
      replace(this.status, `The export failed: ${error.message}`);
    } finally {
      this.busy = false;
      this.enable();
    }
  }
}

/** Hand a Blob to the browser's downloads under `name`. */
function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // Revoked once the download has surely taken it (at once would cancel it in some browsers).
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
