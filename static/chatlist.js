// The chat list in the sidebar, narrowed by the search box.
import { listChats } from "./api.js";
import { escapeHtml, render } from "./markdown.js";
import { $, state } from "./state.js";

let picked = () => {};

// What a click on a chat in the list does (app.js decides).
export function onPick(callback) {
  picked = callback;
}

export async function loadChats() {
  const payload = await listChats($("#search").value.trim());
  state.chats = payload.chats;
  $("#chat-list").replaceChildren(...state.chats.map(chatItem));
}

function chatItem(chat) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.name = chat.name;
  if (chat.name === state.name) button.setAttribute("aria-current", "true");
  const title = document.createElement("span");
  title.textContent = chat.name;
  const detail = document.createElement("span");
  detail.className = chat.snippet ? "snippet" : "model";
  detail.innerHTML = chat.snippet ? render(chat.snippet).replace(/^<p>|<\/p>$/g, "") : escapeHtml(chat.model || "");
  button.append(title, detail);
  button.addEventListener("click", () => picked(chat.name));
  item.append(button);
  return item;
}

export function markCurrent(name) {
  document.querySelectorAll("#chat-list button").forEach((button) => {
    if (button.dataset.name === name) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  });
}
