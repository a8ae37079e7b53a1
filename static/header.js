// The open chat's header: its title (its name until it has one), and the Pin and Archive
// buttons, each named for what it would do now.
import { $, state } from "./state.js";

export function showHeader() {
  if (!state.chat) return;
  $("#chat-title").textContent = state.chat.title || state.name;
  $("#pin").textContent = state.chat.pinned ? "Unpin" : "Pin";
  $("#archive").textContent = state.chat.archived ? "Unarchive" : "Archive";
}

// What the list says of the open chat, which may be newer than what the page read (a title the
// model improved after the first reply, a pin set in another tab): the header shows it.
export function followListing(entry) {
  if (!state.chat || !entry || entry.damaged) return;
  if (entry.updated_at < state.chat.updated_at) return; // a listing older than the chat shown
  takeMarks(entry, ["title", "pinned", "archived"]);
}

// The ``keys`` of ``source`` (a listing entry, a changed chat) into the open chat, shown.
export function takeMarks(source, keys) {
  for (const key of keys) state.chat[key] = source[key];
  showHeader();
}
