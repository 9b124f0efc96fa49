// The app's session secret (HS256; what its backend signs sessions and sign-in links with):
// rotate issues a new one beside the old, shown once, and both verify until the old is retired.
// The server keeps no flag the page could read for "a new one is out": it says so itself when a
// step is out of turn (409), and the page shows its words.

import { h } from "./dom.mjs";
import { confirmAction, shownOnce } from "./settings-ui.mjs";

/** The Session secret area. */
export async function sessionSecret(ctx) {
  const { api } = ctx;
  // Read each time the area is drawn: after a retirement it is also what finds out that this
  // page's own session (signed with the old secret) is no longer taken, and signs out.
  const issuer = (await api.json("")).session_issuer;
  const rotate = h("button", { type: "button" }, "Rotate");
  rotate.addEventListener("click", () => ctx.run(rotate, async () => {
    const made = await api.send("POST", "/session-secret/rotate");
    ctx.keep(shownOnce("New session secret", made.session_secret,
      "Sign new sessions with it. Sessions signed with the old secret verify until it is retired.",
      () => ctx.keep(null)));
    return made;
  }));
  const retire = h("button", { type: "button", class: "danger" }, "Retire the old secret");
  retire.addEventListener("click", () => ctx.run(retire, async () => {
    const sure = await confirmAction("Retire the old session secret?",
      "Every session signed with it stops working at once: your backend's, and sign-in links " +
      "made before the rotation (this page's own session too, if it is one of them).",
      "Retire");
    return sure ? api.send("POST", "/session-secret/retire") : null;
  }));
  return [
    h("p", { "data-testid": "issuers" }, "This app takes sessions signed with its own secret (HS256)",
      issuer ? [" and from its identity provider ", h("code", {}, issuer.issuer),
        " (set with the API: not from here)."] : "; it has no identity provider."),
    h("section", { class: "card", "aria-labelledby": "rotate-title" },
      h("h3", { id: "rotate-title" }, "1. Rotate"),
      h("p", {}, "Issue a new secret beside the current one; both verify sessions. Shown once."),
      rotate),
    h("section", { class: "card", "aria-labelledby": "retire-title" },
      h("h3", { id: "retire-title" }, "2. Retire"),
      h("p", {}, "Once every signer uses the new secret: only the new one verifies from then on."),
      retire),
  ];
}
