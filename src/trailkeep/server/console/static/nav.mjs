// How a view (the log, an entry) moves, and what it may touch outside itself. The console's own
// views use the page's address, history and title: `pageNav`, the default. The embedded viewer
// (embed.mjs) gives its own, which keeps the view in the element, so that an app's page keeps
// its URL, history and title to itself.

import { go, hrefOf } from "./dom.mjs";
import { clear } from "./session.mjs";

/** The console page's navigator: the address is the state (see main.mjs). */
export const pageNav = Object.freeze({
  /** The address of a view with these parameters. */
  href: hrefOf,
  /** Go to an address made by `href`, with a history state. */
  go,
  /** The current history entry's state (the cursors of the pages before this one). */
  state: () => history.state,
  /** Back to the previous view. */
  back: () => history.back(),
  /** Name the view (the tab's title). */
  title: (text) => {
    document.title = text;
  },
  /** The server no longer takes the credential (expired, revoked): sign in again. */
  signedOut: (message) => {
    clear(sessionStorage);
    window.dispatchEvent(new CustomEvent("tk-signin", { detail: { message } }));
  },
});
