// Data subjects: legal holds (placed, released) and erasure requests with their approvals. An
// erasure cannot be undone: asking for one is confirmed first, and approving is offered only to
// an owner's session (keys never approve; the server counts distinct owners).

import { h } from "./dom.mjs";
import { confirmAction, field, subjectFields, subjectText, table, when } from "./settings-ui.mjs";

function reasonField() {
  const reason = h("input", { name: "reason", required: true, maxlength: "1000", autocomplete: "off" });
  return { reason, node: field("Reason", reason, "Recorded in the log with the request.") };
}

/** The Legal holds area. */
export async function holds(ctx) {
  const { api } = ctx;
  const found = (await api.json("/holds")).holds;
  const rows = found.map((hold) => {
    let action = h("span", { class: "muted" }, "released");
    if (!hold.released_at) {
      action = h("button", { type: "button", class: "quiet", "aria-label": `Release ${hold.id}` }, "Release");
      const button = action;
      button.addEventListener("click", () => ctx.run(button, async () => {
        const sure = await confirmAction(`Release the hold ${hold.id}?`,
          `Entries of ${subjectText(hold.subject)} are again subject to retention and erasure.`,
          "Release");
        return sure ? api.send("DELETE", `/holds/${encodeURIComponent(hold.id)}`) : null;
      }));
    }
    return [h("code", {}, hold.id), subjectText(hold.subject), hold.reason, when(hold.placed_at),
      when(hold.released_at), action];
  });
  const subject = subjectFields(["actor", "target", "all"]);
  const { reason, node } = reasonField();
  const place = h("button", { type: "submit" }, "Place hold");
  const form = h("form", { class: "card", "aria-label": "Place a legal hold" },
    h("h3", {}, "Place a hold"), subject.nodes, node, place);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(place, () => api.send("POST", "/holds", { subject: subject.read(), reason: reason.value }));
  });
  return [
    found.length
      ? table("Legal holds", ["Id", "Subject", "Reason", "Placed", "Released", ""], rows, "holds")
      : h("p", { class: "muted" }, "No legal holds."),
    form,
  ];
}

/** The Erasure requests area. */
export async function erasures(ctx) {
  const { api } = ctx;
  const [found, app] = await Promise.all([api.json("/erasures"), api.json("")]);
  const rows = found.erasures.map((erasure) => {
    let action = "";
    if (erasure.status === "pending") {
      if (ctx.canApprove) {
        const approve = h("button", { type: "button", "aria-label": `Approve ${erasure.id}` }, "Approve");
        approve.addEventListener("click", () => ctx.run(approve, async () => {
          const sure = await confirmAction(`Approve the erasure ${erasure.id}?`,
            `Reason given: ${erasure.reason}. With enough approvals its ${erasure.matched} ` +
            "matched entries are erased for good.", "Approve");
          return sure ? api.send("POST", `/erasures/${encodeURIComponent(erasure.id)}/approve`) : null;
        }));
        action = approve;
      } else {
        action = h("span", { class: "muted" }, "an owner's session approves");
      }
    }
    return [h("code", {}, erasure.id), h("span", { class: `state ${erasure.status}` }, erasure.status),
      `${erasure.approvals} of ${erasure.approvals_required}`, String(erasure.matched),
      String(erasure.erased ?? 0), erasure.reason, when(erasure.created_at), when(erasure.done_at), action];
  });
  const subject = subjectFields(["actor", "target", "seqs"]);
  const { reason, node } = reasonField();
  const send = h("button", { type: "submit", class: "danger" }, "Request erasure");
  const needed = app.erasure_approvals;
  const form = h("form", { class: "card", "aria-label": "Request an erasure" },
    h("h3", {}, "Request an erasure"),
    h("p", { class: "help" }, needed === 1
      ? "This app needs one owner's approval: an owner's request is carried out at once."
      : `This app needs ${needed} owners' approvals: an owner's request counts as the first.`),
    subject.nodes, node, send);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(send, async () => {
      const body = { subject: subject.read(), reason: reason.value };
      const sure = await confirmAction(`Erase the entries of ${subjectText(body.subject)}?`,
        "Every entry in which it is the actor or the target is erased for good once approved; " +
        "the log keeps a stub of each. This cannot be undone.", "Request erasure");
      return sure ? api.send("POST", "/erasures", body) : null;
    });
  });
  return [
    found.erasures.length
      ? table("Erasure requests",
        ["Id", "Status", "Approvals", "Matched", "Erased", "Reason", "Requested", "Done", ""],
        rows, "erasures")
      : h("p", { class: "muted" }, "No erasure requests."),
    form,
  ];
}
