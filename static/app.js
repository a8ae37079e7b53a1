// chatproxy's own chat page: the chat routes of this server, nothing else, no build step.
// This module wires the page's controls to the modules that do the work, then starts it.
//
//   api.js           every call to chatproxy (the token, the error shape, one function a route)
//   stream.js        reading a reply's event stream
//   turn.js          one turn as it streams into the view (the cue, Stop, Esc, joining again)
//   follow.js        the view follows a growing reply unless the person scrolled up
//   conversation.js  the open chat and what the person does in it
//   messages.js      one message's element
//   copy.js          copy buttons
//   chatlist.js      the sidebar's list (titles, pinned first, archived apart) and search,
//                    folded away on a phone
//   header.js        the open chat's title and its Pin and Archive buttons
//   liveness.js      turns run elsewhere show up: the list read again, a running chat attached
//   router.js        the open chat's URL, #/chat/NAME
//   dialogs.js       new, rename, delete, settings, export
//   models.js        the models listed (by upstream, when several) and the model pickers
//   health.js        the banner that says LM Studio is down or has no model
//   notices.js       what the page says when something goes wrong
//   markdown.js      escape-first Markdown
//   theme.js         dark or light
import { loadChats, markCurrent, showArchived, wireFolding } from "./chatlist.js";
import { closeChat, openChat, send } from "./conversation.js";
import * as dialogs from "./dialogs.js";
import { watchScrolling } from "./follow.js";
import { checkHealth } from "./health.js";
import { keepLive } from "./liveness.js";
import { wirePicker } from "./models.js";
import { explain, guarded, showBanner } from "./notices.js";
import { chatInUrl, onRoute } from "./router.js";
import { $, state } from "./state.js";
import { restoreTheme, toggleTheme } from "./theme.js";
import { leaveTurn, stopTurn } from "./turn.js";

// Shows the chat the URL names (none: the empty view).
async function route() {
  const name = chatInUrl();
  if (name !== null) {
    try {
      await openChat(name);
      return;
    } catch (error) {
      if (error.name === "AbortError") return;
      showBanner(explain(error));
    }
  }
  leaveTurn();
  closeChat();
  markCurrent(null);
}

function wire() {
  restoreTheme();
  $("#theme").addEventListener("click", toggleTheme);
  wireFolding();
  watchScrolling();
  onRoute(route);
  $("#lmstudio-check").addEventListener("click", checkHealth);
  $("#new-chat").addEventListener("click", () => guarded(dialogs.newChat));
  wirePicker($("#new-form"));
  $("#new-form").addEventListener("submit", (event) => guarded(() => dialogs.createChat(event)));
  $("#new-cancel").addEventListener("click", () => $("#new-dialog").close());
  $("#rename").addEventListener("click", dialogs.startRename);
  $("#rename-form").addEventListener("submit", (event) => guarded(() => dialogs.renameChat(event)));
  $("#rename-cancel").addEventListener("click", () => $("#rename-dialog").close());
  $("#pin").addEventListener("click", () => guarded(() => dialogs.toggleMark("pinned")));
  $("#archive").addEventListener("click", () => guarded(() => dialogs.toggleMark("archived")));
  $("#archived-toggle").addEventListener("click", () => guarded(() => showArchived(!state.archived)));
  $("#delete").addEventListener("click", () => guarded(dialogs.deleteChat));
  $("#settings-toggle").addEventListener("click", () => guarded(dialogs.toggleSettings));
  wirePicker($("#settings"));
  $("#settings").addEventListener("submit", (event) => guarded(() => dialogs.saveSettings(event)));
  $("#export-json").addEventListener("click", () => guarded(() => dialogs.exportChat("json")));
  $("#export-md").addEventListener("click", () => guarded(() => dialogs.exportChat("markdown")));
  $("#composer").addEventListener("submit", (event) => guarded(() => send(event)));
  $("#stop").addEventListener("click", stopTurn);
  $("#input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      guarded(() => send());
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.turn) {
      event.preventDefault();
      stopTurn();
    }
  });
  let searching;
  $("#search").addEventListener("input", () => {
    clearTimeout(searching);
    searching = setTimeout(() => guarded(loadChats), 150);
  });
}

wire();
checkHealth();
guarded(loadChats)
  .then(route)
  .then(() => {
    document.body.dataset.ready = "true"; // for the browser tests: the first listing (and chat) is shown
    keepLive();
  });
