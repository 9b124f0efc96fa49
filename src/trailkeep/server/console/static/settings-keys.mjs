// API keys: the list (never a secret: the server keeps only hashes), a new key with some of the
// creator's scopes, shown once with a copy button, and revoking one after a confirmation.

import { h } from "./dom.mjs";
import { confirmAction, field, shownOnce, table, uid, when } from "./settings-ui.mjs";

const SCOPES = [
  ["events:write", "write entries"],
  ["events:read", "read and export the log"],
  ["manage", "settings, keys, webhooks, holds, erasures"],
];

/** The key id a `tk_<ident>_<secret>` key has (to mark the key this tab signed in with). */
export function keyIdOf(credential) {
  const match = /^tk_([a-z0-9]+)_/.exec(String(credential));
  return match ? `key_${match[1]}` : null;
}

/** Active, revoked or expired. */
function statusOf(key) {
  if (key.revoked_at) return "revoked";
  if (key.expires_at && Date.parse(key.expires_at) <= Date.now()) return "expired";
  return "active";
}

/** The API keys area. */
export async function keys(ctx) {
  const { api, signedIn } = ctx;
  const found = (await api.json("/keys")).keys;
  const mine = signedIn.kind === "key" ? keyIdOf(signedIn.credential) : null;
  const rows = found.map((key) => {
    const status = statusOf(key);
    let action = "";
    if (status === "active") {
      const revoke = h("button", {
        type: "button", class: "quiet", "aria-label": `Revoke ${key.name ?? key.key_id}`,
      }, "Revoke");
      revoke.addEventListener("click", () => ctx.run(revoke, async () => {
        const sure = await confirmAction(`Revoke ${key.name ? `“${key.name}”` : key.key_id}?`,
          `Every request with ${key.key_id} is refused from now on (within seconds on other ` +
          `nodes). This cannot be undone.${key.key_id === mine ? " You are signed in with it." : ""}`,
          "Revoke");
        return sure ? api.send("DELETE", `/keys/${encodeURIComponent(key.key_id)}`) : null;
      }));
      action = revoke;
    }
    return [
      key.name ?? h("span", { class: "muted" }, "(no name)"),
      [h("code", {}, key.key_id), key.key_id === mine ? " (this sign-in)" : null],
      key.scopes.join(", "), when(key.created_at), when(key.expires_at),
      h("span", { class: `state ${status}` }, status), action,
    ];
  });
  return [
    found.length
      ? table("API keys", ["Name", "Id", "Scopes", "Created", "Expires", "Status", ""], rows, "keys")
      : h("p", { class: "muted" }, "No keys."),
    createForm(ctx),
  ];
}

function createForm(ctx) {
  const { api } = ctx;
  const name = h("input", { name: "name", autocomplete: "off", maxlength: "200", placeholder: "checkout backend" });
  const expires = h("input", { name: "expires", type: "date" });
  const legend = uid("scopes");
  const boxes = SCOPES.map(([scope, what]) => {
    const box = h("input", { type: "checkbox", name: "scope", value: scope, id: uid("scope") });
    return { scope, box, node: h("div", { class: "check" }, box, " ",
      h("label", { for: box.id }, h("code", {}, scope), ` (${what})`)) };
  });
  const create = h("button", { type: "submit" }, "Create key");
  const form = h("form", { class: "card", "aria-label": "Create a key" },
    h("h3", {}, "Create a key"),
    field("Name", name, "Optional: what uses the key."),
    h("fieldset", { "aria-describedby": `${legend}-help` },
      h("legend", { id: legend }, "Scopes"),
      boxes.map((b) => b.node),
      h("p", { class: "help", id: `${legend}-help` },
        "A key creates only keys whose scopes it holds itself; an owner's session holds them all.")),
    field("Expires (optional)", expires, "The key is refused from the start of that day, UTC."),
    create);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(create, async () => {
      const scopes = boxes.filter((b) => b.box.checked).map((b) => b.scope);
      if (!scopes.length) throw new Error("Choose at least one scope.");
      const body = { scopes };
      if (name.value.trim()) body.name = name.value.trim();
      if (expires.value) body.expires_at = `${expires.value}T00:00:00Z`;
      const made = await api.send("POST", "/keys", body);
      ctx.keep(shownOnce(`New key ${made.key_id}`, made.key,
        `Scopes: ${made.scopes.join(", ")}. Use it as Authorization: Bearer <key>.`,
        () => ctx.keep(null)));
      return made;
    });
  });
  return form;
}
