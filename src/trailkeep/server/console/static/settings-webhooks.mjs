// Webhook destinations: each with its status, cursor (the last seq delivered) and last error,
// its recent delivery attempts on request, replay from a seq, and delete; a new destination's
// signing secret (whsec_...) is shown once.

import { h, replace } from "./dom.mjs";
import { confirmAction, field, shownOnce, table, uid, when } from "./settings-ui.mjs";

/** The Webhooks area. */
export async function webhooks(ctx) {
  const found = (await ctx.api.json("/webhooks")).webhooks;
  return [
    found.length
      ? h("div", { class: "hooks", "data-testid": "webhooks" }, found.map((hook) => card(ctx, hook)))
      : h("p", { class: "muted", "data-testid": "webhooks" }, "No webhook destinations."),
    createForm(ctx),
  ];
}

function card(ctx, hook) {
  const { api } = ctx;
  const path = `/webhooks/${encodeURIComponent(hook.id)}`;
  const title = uid("hook");
  const filter = Object.keys(hook.filter ?? {}).length ? JSON.stringify(hook.filter) : "every entry";

  const from = h("input", { name: "from_seq", type: "number", min: "0", step: "1", inputmode: "numeric", required: true });
  const replay = h("button", { type: "submit", class: "quiet" }, "Replay");
  const replayForm = h("form", { class: "inline", "aria-label": `Replay ${hook.url}` },
    field("Replay from seq", from, "Delivers again from this seq on, and re-enables it."), replay);
  replayForm.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(replay, () => api.send("POST", `${path}/replay`, { from_seq: Number(from.value) }));
  });

  const remove = h("button", { type: "button", class: "quiet" }, "Delete");
  remove.addEventListener("click", () => ctx.run(remove, async () => {
    const sure = await confirmAction(`Delete the destination ${hook.url}?`,
      "Nothing more is delivered to it, and its cursor is forgotten.", "Delete");
    return sure ? api.send("DELETE", path) : null;
  }));

  const attempts = h("div", { class: "deliveries" });
  const show = h("button", { type: "button", class: "quiet", "aria-expanded": "false" }, "Recent deliveries");
  show.addEventListener("click", async () => {
    if (show.getAttribute("aria-expanded") === "true") {
      show.setAttribute("aria-expanded", "false");
      replace(attempts);
      return;
    }
    show.setAttribute("aria-expanded", "true");
    replace(attempts, h("p", { role: "status" }, "Loading…"));
    try {
      replace(attempts, deliveries((await api.json(`${path}/deliveries`)).deliveries));
    } catch (error) {
      replace(attempts, h("p", { class: "error", role: "alert" }, `The server refused: ${error.message}`));
    }
  });

  return h("article", { class: "card hook", "aria-labelledby": title, "data-hook": hook.id },
    h("h3", { id: title }, h("code", {}, hook.url)),
    h("dl", { class: "fields" },
      h("dt", {}, "Id"), h("dd", {}, h("code", {}, hook.id)),
      h("dt", {}, "Status"), h("dd", { "data-testid": "hook-status" },
        h("span", { class: `state ${hook.status}` }, hook.status),
        hook.disabled_reason ? ` (${hook.disabled_reason})` : ""),
      h("dt", {}, "Delivered up to"), h("dd", {}, `seq ${hook.cursor}`),
      h("dt", {}, "Last error"), h("dd", { "data-testid": "hook-error" }, hook.last_error ?? "none"),
      h("dt", {}, "Attempts"), h("dd", {}, String(hook.attempts ?? 0),
        hook.next_attempt_at ? [", next ", when(hook.next_attempt_at)] : ""),
      h("dt", {}, "Entries"), h("dd", {}, filter, `, as ${hook.format}`),
      h("dt", {}, "Created"), h("dd", {}, when(hook.created_at))),
    replayForm,
    h("div", { class: "actions" }, show, remove),
    attempts);
}

function deliveries(found) {
  if (!found.length) return h("p", { class: "muted" }, "No attempts yet.");
  return table("Recent delivery attempts", ["At", "Seqs", "Status", "Error"], found.map((d) => [
    when(d.at), d.first_seq === null ? "—" : `${d.first_seq}–${d.last_seq}`,
    d.status_code === null ? "no answer" : String(d.status_code), d.error ?? "",
  ]), "deliveries");
}

function createForm(ctx) {
  const url = h("input", {
    name: "url", type: "url", required: true, autocomplete: "off", spellcheck: "false",
    placeholder: "https://hooks.example.com/trailkeep",
  });
  const prefix = h("input", { name: "action_prefix", autocomplete: "off", spellcheck: "false", placeholder: "order." });
  const format = h("select", { name: "format" }, h("option", { value: "trailkeep" }, "trailkeep (entries as stored)"),
    h("option", { value: "ocsf" }, "ocsf (OCSF events)"));
  const create = h("button", { type: "submit" }, "Add destination");
  const form = h("form", { class: "card", "aria-label": "Add a webhook destination" },
    h("h3", {}, "Add a destination"),
    field("URL", url, "https, on a public address. Entries from now on are delivered."),
    field("Only actions starting with (optional)", prefix),
    field("Format", format),
    create);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(create, async () => {
      const body = { url: url.value.trim(), format: format.value };
      if (prefix.value.trim()) body.filter = { action_prefix: prefix.value.trim() };
      const made = await ctx.api.send("POST", "/webhooks", body);
      ctx.keep(shownOnce(`Signing secret of ${made.id}`, made.secret,
        "Check each delivery's webhook-signature with it (Standard Webhooks).",
        () => ctx.keep(null)));
      return made;
    });
  });
  return form;
}
