// Turns run elsewhere (another tab, another client, curl) show up: the chat list, which marks
// the chats being answered, is read again when the page comes back into view and every few
// seconds while it is in view; an open chat that is being answered without this page
// watching it is read again, which attaches to its turn (conversation.js).
import { loadChats } from "./chatlist.js";
import { reloadChat } from "./conversation.js";
import { state } from "./state.js";

const POLL_MS = 5000;
let looking = false; // one look at a time: a slow server is not asked again meanwhile

async function look() {
  if (looking || document.visibilityState !== "visible") return;
  looking = true;
  try {
    await loadChats();
    const open = state.chats.find((chat) => chat.name === state.name);
    if (open && open.running && !state.turn) await reloadChat();
  } catch {
    // The person's next action says what is wrong; the next look tries again.
  } finally {
    looking = false;
  }
}

export function keepLive() {
  document.addEventListener("visibilitychange", look);
  window.addEventListener("focus", look);
  setInterval(look, POLL_MS);
}
