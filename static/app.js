// chatproxy's own chat page: the chat routes of this server, nothing else, no build step.
// This module wires the page's controls to the modules that do the work, then starts it.
//
//   api.js           every call to chatproxy (the token, the error shape, one function a route)
//   stream.js        reading a reply's event stream
//   turn.js          one turn as it streams into the view (Stop, Esc)
//   conversation.js  the open chat and what the person does in it
//   messages.js      one message's element
//   chatlist.js      the sidebar's list and search
//   dialogs.js       new, rename, delete, settings, export
//   models.js        LM Studio's models and the pickers
//   notices.js       what the page says when something goes wrong
//   markdown.js      escape-first Markdown
import { loadChats, onPick } from "./chatlist.js";
import { openChat, send } from "./conversation.js";
import * as dialogs from "./dialogs.js";
import { guarded } from "./notices.js";
import { $, state } from "./state.js";
import { restoreTheme, toggleTheme } from "./theme.js";
import { stopStream } from "./turn.js";

function wire() {
  restoreTheme();
  $("#theme").addEventListener("click", toggleTheme);
  onPick((name) => guarded(() => openChat(name)));
  $("#new-chat").addEventListener("click", () => guarded(dialogs.newChat));
  $("#new-form").addEventListener("submit", (event) => guarded(() => dialogs.createChat(event)));
  $("#new-cancel").addEventListener("click", () => $("#new-dialog").close());
  $("#rename").addEventListener("click", dialogs.startRename);
  $("#rename-form").addEventListener("submit", (event) => guarded(() => dialogs.renameChat(event)));
  $("#rename-cancel").addEventListener("click", () => $("#rename-dialog").close());
  $("#delete").addEventListener("click", () => guarded(dialogs.deleteChat));
  $("#settings-toggle").addEventListener("click", () => guarded(dialogs.toggleSettings));
  $("#settings").addEventListener("submit", (event) => guarded(() => dialogs.saveSettings(event)));
  $("#export-json").addEventListener("click", () => guarded(() => dialogs.exportChat("json")));
  $("#export-md").addEventListener("click", () => guarded(() => dialogs.exportChat("markdown")));
  $("#composer").addEventListener("submit", (event) => guarded(() => send(event)));
  $("#stop").addEventListener("click", stopStream);
  $("#input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      guarded(() => send());
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.controller) {
      event.preventDefault();
      stopStream();
    }
  });
  let searching;
  $("#search").addEventListener("input", () => {
    clearTimeout(searching);
    searching = setTimeout(() => guarded(loadChats), 150);
  });
}

wire();
guarded(loadChats).then(() => {
  document.body.dataset.ready = "true"; // for the browser tests: the first listing is shown
});
