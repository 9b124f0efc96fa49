// The log's extras: a histogram of the current search's counts over time (GET .../stats with
// group_by=day, or hour when the entries span two days or less), drawn as SVG here; and the live
// view, which reads the SSE stream with fetch() (EventSource cannot send a bearer token) and
// hands each new entry to the table.

import { h, replace } from "./dom.mjs";

const SVG = "http://www.w3.org/2000/svg";
const HOUR = 3600e3;
const DAY = 24 * HOUR;
const MAX_BUCKETS = 400;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

/** The start of each bucket from the first to the last key, with zero for the empty ones. */
export function buckets(groups, unit) {
  const step = unit === "hour" ? HOUR : DAY;
  const known = new Map();
  for (const { key, count } of groups) {
    const at = Date.parse(unit === "hour" ? key : `${key}T00:00:00Z`);
    if (!Number.isNaN(at)) known.set(at, (known.get(at) ?? 0) + count);
  }
  if (known.size === 0) return [];
  const times = [...known.keys()].sort((a, b) => a - b);
  let first = times[0];
  const last = times.at(-1);
  // A long history shows its latest buckets (the table is newest first too); a short one is
  // shown in a day's hours or two weeks' days, so that one bar is not the whole width.
  first = Math.max(first, last - (MAX_BUCKETS - 1) * step);
  first = Math.min(first, last - ((unit === "hour" ? 24 : 14) - 1) * step);
  const out = [];
  for (let at = first; at <= last; at += step) out.push({ at, count: known.get(at) ?? 0 });
  return out;
}

/** A label for a bucket, in UTC (the keys are UTC days and hours). */
function labelOf(at, unit) {
  const iso = new Date(at).toISOString();
  return unit === "hour" ? `${iso.slice(0, 10)} ${iso.slice(11, 13)}:00 UTC` : iso.slice(0, 10);
}

/** Draw the histogram of `series` into an SVG element, with a text summary for everyone. */
export function drawHistogram(series, unit) {
  const total = series.reduce((n, b) => n + b.count, 0);
  const busiest = series.reduce((best, b) => (b.count > best.count ? b : best), series[0]);
  const used = series.filter((b) => b.count > 0);
  const span = used.length === 1 ? `all in ${labelOf(used[0].at, unit)}`
    : `from ${labelOf(used[0].at, unit)} to ${labelOf(used.at(-1).at, unit)}; busiest ${labelOf(busiest.at, unit)} (${busiest.count})`;
  const summary = `${total} ${total === 1 ? "entry" : "entries"}, by ${unit}, ${span}`;
  const width = 600;
  const height = 80;
  const gap = series.length > 60 ? 0 : 1;
  const barWidth = width / series.length;
  const bars = series.map((b, i) => {
    const tall = busiest.count ? Math.max(b.count ? 2 : 0, (b.count / busiest.count) * (height - 4)) : 0;
    return svg("rect", {
      x: (i * barWidth).toFixed(2), y: (height - tall).toFixed(2),
      width: Math.max(barWidth - gap, 0.5).toFixed(2), height: tall.toFixed(2), class: "bar",
    }, svg("title", {}, `${labelOf(b.at, unit)}: ${b.count}`));
  });
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img",
    "aria-label": summary, class: "histogram-chart", "data-buckets": series.length,
  }, svg("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: "axis" }), ...bars);
  return h("figure", { class: "histogram" }, chart,
    h("figcaption", { class: "muted", "data-testid": "histogram-caption" }, summary));
}

/** The histogram of one search: keeps itself current as the search changes. */
export class Histogram {
  constructor(container) {
    this.container = container;
    this.ticket = 0;
  }

  /** Count the search's entries over time and draw them (a read, recorded like any other). */
  async update(api, filters) {
    const ticket = ++this.ticket;
    try {
      let unit = "day";
      let stats = await api.json("/stats", [...filters, ["group_by", "day"]]);
      if (stats.groups.length > 0 && stats.groups.length <= 2) {
        unit = "hour";
        stats = await api.json("/stats", [...filters, ["group_by", "hour"]]);
      }
      if (ticket !== this.ticket) return;
      const series = buckets(stats.groups, unit);
      replace(this.container, series.length ? drawHistogram(series, unit) : null);
    } catch {
      // The table says what went wrong with the search; an empty histogram says nothing more.
      if (ticket === this.ticket) replace(this.container);
    }
  }

  clear() {
    this.ticket += 1;
    replace(this.container);
  }
}

/** Split Server-Sent Events text into events: `{event, id, data}` (the SSE spec's fields). */
export function* sseEvents(buffer) {
  for (const block of buffer.split(/\r?\n\r?\n/)) {
    let event = "message";
    let id = null;
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "event") event = value;
      else if (name === "id") id = value;
      else if (name === "data") data.push(value);
    }
    if (data.length) yield { event, id, data: data.join("\n") };
  }
}

/** The live view: one stream at a time, each entry given to `onEntry`, its state to `onState`. */
export class Live {
  constructor(onEntry, onState) {
    this.onEntry = onEntry;
    this.onState = onState;
    this.controller = null;
  }

  get running() {
    return this.controller !== null;
  }

  /** Read `.../events/stream` with these filters until stopped (reconnecting after an end). */
  async start(api, filters) {
    this.stop();
    const controller = (this.controller = new AbortController());
    let after = null;
    this.onState("Live: connecting…");
    try {
      while (!controller.signal.aborted) {
        // After the server ends a stream (it does, hourly), resume after the last seq seen.
        const query = after === null ? filters : [...filters, ["after_seq", after]];
        const response = await api.fetch("/events/stream", query, {
          signal: controller.signal, headers: { Accept: "text/event-stream" },
        });
        this.onState("Live: new entries appear at the top.");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let pending = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          pending += value.replace(/\r\n/g, "\n");
          const end = pending.lastIndexOf("\n\n");
          if (end < 0) continue;
          const complete = pending.slice(0, end);
          pending = pending.slice(end + 2);
          for (const event of sseEvents(complete)) {
            if (event.event === "dropped") throw new Error("the stream fell too far behind; reload");
            if (event.event !== "message") continue;
            const entry = JSON.parse(event.data);
            after = entry.seq;
            this.onEntry(entry);
          }
        }
        await new Promise((done) => setTimeout(done, 1000));
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      this.onState(`Live stopped: ${error.message}`);
    } finally {
      if (this.controller === controller) this.controller = null;
    }
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }
}
