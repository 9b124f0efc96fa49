// The app's own settings (GET and PATCH /v1/apps/{app}): retention with the approvals it and
// erasures need, and the web origins allowed to write from a browser. A shorter retention
// destroys history, so over the API it is a request that waits for its notice period and the
// owners' approvals (DESIGN §5): it is shown here with Approve and Cancel.

import { h } from "./dom.mjs";
import { confirmAction, field, when } from "./settings-ui.mjs";

/** How long entries are kept, in words. */
export function retentionText(days) {
  if (days === null || days === undefined) return "kept forever";
  return `${days} ${days === 1 ? "day" : "days"}`;
}

/** The Retention area: current retention, a change, the change that waits, approvals. */
export async function retention(ctx) {
  const { api } = ctx;
  const app = await api.json("");
  const days = h("input", {
    name: "days", type: "number", min: "1", max: "36500", step: "1", inputmode: "numeric",
    value: app.retention_days ?? "",
  });
  const save = h("button", { type: "submit" }, "Change retention");
  const form = h("form", { class: "card", "aria-label": "Change retention" },
    field("Retention in days", days,
      "Empty keeps entries forever. A shorter retention waits 24 hours and the owners' approval."),
    save);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = days.value.trim();
    const wanted = text === "" ? null : Number(text);
    ctx.run(save, () => api.send("PATCH", "", { retention_days: wanted }));
  });

  const approvals = h("select", { name: "approvals" },
    [1, 2].map((n) => h("option", { value: n, selected: n === app.erasure_approvals }, String(n))));
  const setApprovals = h("button", { type: "submit" }, "Change approvals");
  const approvalsForm = h("form", { class: "card", "aria-label": "Change approvals" },
    field("Owners who approve", approvals,
      "How many distinct owners approve an erasure, or a shorter retention (1 or 2)."),
    setApprovals);
  approvalsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(setApprovals, () => api.send("PATCH", "", { erasure_approvals: Number(approvals.value) }));
  });

  return [
    h("dl", { class: "fields", "data-testid": "retention-now" },
      h("dt", {}, "Retention"), h("dd", {}, retentionText(app.retention_days)),
      h("dt", {}, "Approvals"), h("dd", {}, `${app.erasure_approvals} owner${app.erasure_approvals === 1 ? "" : "s"}`)),
    pending(ctx, app.pending_retention),
    h("div", { class: "forms" }, form, approvalsForm),
  ];
}

/** The shorter retention that waits, if any, with what may be done about it. */
function pending(ctx, waiting) {
  if (!waiting) return h("p", { class: "muted" }, "No retention change waits.");
  const { api } = ctx;
  const approved = waiting.approvals >= waiting.approvals_required;
  const approve = h("button", { type: "button" }, "Approve");
  approve.addEventListener("click", () =>
    ctx.run(approve, () => api.send("POST", "/retention-change/approve")));
  const cancel = h("button", { type: "button", class: "quiet" }, "Cancel the change");
  cancel.addEventListener("click", () => ctx.run(cancel, async () => {
    const sure = await confirmAction("Cancel the retention change?",
      `The app keeps its retention; the request for ${retentionText(waiting.retention_days)} is withdrawn (and logged).`,
      "Cancel the change");
    return sure ? api.send("DELETE", "/retention-change") : null;
  }));
  return h("section", { class: "card pending", "aria-labelledby": "pending-title", "data-testid": "pending-retention" },
    h("h3", { id: "pending-title" }, "A shorter retention waits"),
    h("dl", { class: "fields" },
      h("dt", {}, "New retention"), h("dd", {}, retentionText(waiting.retention_days)),
      h("dt", {}, "Takes effect"),
      h("dd", {}, when(waiting.effective_at), approved ? "" : " (if approved by then)"),
      h("dt", {}, "Approvals"), h("dd", {}, `${waiting.approvals} of ${waiting.approvals_required}`)),
    h("div", { class: "actions" },
      approved
        ? h("span", { class: "muted", "data-testid": "pending-approved" },
          "Approved: nothing more is needed; it takes effect then unless cancelled.")
        : ctx.canApprove ? approve
          : h("span", { class: "muted" }, "A key never approves: an owner's session does."),
      cancel));
}

/** The Allowed origins area: the list, each removable, and one to add. */
export async function origins(ctx) {
  const { api } = ctx;
  const app = await api.json("");
  const list = app.allowed_origins;
  const patch = (next) => api.send("PATCH", "", { allowed_origins: next });
  const items = list.map((origin) => {
    const remove = h("button", { type: "button", class: "quiet", "aria-label": `Remove ${origin}` }, "Remove");
    remove.addEventListener("click", () => ctx.run(remove, async () => {
      const sure = await confirmAction(`Remove ${origin}?`,
        "Pages on that origin can no longer write to this app from a browser.", "Remove");
      return sure ? patch(list.filter((o) => o !== origin)) : null;
    }));
    return h("li", {}, h("code", {}, origin), " ", remove);
  });
  const input = h("input", {
    name: "origin", type: "url", required: true, autocomplete: "off", spellcheck: "false",
    placeholder: "https://shop.example.com",
  });
  const add = h("button", { type: "submit" }, "Add origin");
  const form = h("form", { class: "card", "aria-label": "Add an origin" },
    field("Origin", input, "scheme://host[:port], no path: a page there may write from a browser."),
    add);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(add, () => patch([...list, input.value.trim()]));
  });
  return [
    list.length
      ? h("ul", { class: "origins", "data-testid": "origins" }, items)
      : h("p", { class: "muted", "data-testid": "origins" }, "No origin is allowed: only backends write."),
    form,
  ];
}
