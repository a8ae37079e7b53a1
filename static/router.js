// A URL per chat, #/chat/NAME (NAME URI-encoded), so reload, back and bookmarks reopen it.
// The URL says which chat is open; app.js opens what it says whenever it changes.
const PREFIX = "#/chat/";

let changed = () => {};

// ``callback`` runs on every change of the URL's chat (back, forward, a typed URL, goTo).
export function onRoute(callback) {
  changed = callback;
  window.addEventListener("hashchange", () => changed());
}

// The chat the URL names, or null (none, or a fragment that is not one of ours).
export function chatInUrl() {
  if (!location.hash.startsWith(PREFIX)) return null;
  try {
    return decodeURIComponent(location.hash.slice(PREFIX.length));
  } catch {
    return null; // a hand-made URL with a broken escape
  }
}

// Opens chat ``name`` (null: none) through the URL; ``replace`` when the old entry is no use
// to Back (the chat was renamed or deleted).
export function goTo(name, { replace = false } = {}) {
  const target = name === null ? "#/" : PREFIX + encodeURIComponent(name);
  if (location.hash === target) changed(); // no hashchange: open it again
  else if (replace) location.replace(target);
  else location.hash = target;
}
