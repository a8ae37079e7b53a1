// The chat list in the sidebar, narrowed by the search box; a chat being answered is marked.
// Under 700 px it folds away behind the Chats button and comes back over the conversation.
import { listChats } from "./api.js";
import { escapeHtml, render } from "./markdown.js";
import { goTo } from "./router.js";
import { $, state } from "./state.js";

let listing = 0; // the latest loadChats: an earlier one that ends later shows nothing
let shown = ""; // the listing on screen, as JSON: the same one again changes nothing

export async function loadChats() {
  const mine = ++listing;
  const payload = await listChats($("#search").value.trim());
  if (mine !== listing) return;
  state.chats = payload.chats;
  const text = JSON.stringify(state.chats);
  if (text === shown) return; // the list is read again often: keep the person's place in it
  shown = text;
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
  button.append(title);
  if (chat.running) {
    const running = document.createElement("span");
    running.className = "running";
    running.textContent = " answering…"; // the space: the button's accessible name reads "NAME answering…"
    button.append(running);
  }
  button.append(detail);
  button.addEventListener("click", () => {
    foldList();
    goTo(chat.name);
  });
  item.append(button);
  return item;
}

export function markCurrent(name) {
  document.querySelectorAll("#chat-list button").forEach((button) => {
    if (button.dataset.name === name) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  });
}

// -- folding (the CSS shows the button and folds the list only under 700 px) ----------------

function showList(open) {
  $("#app").classList.toggle("list-open", open);
  $("#chats-toggle").setAttribute("aria-expanded", String(open));
}

export function foldList() {
  showList(false);
}

export function wireFolding() {
  $("#chats-toggle").addEventListener("click", () => {
    const open = !$("#app").classList.contains("list-open");
    showList(open);
    if (open) $("#new-chat").focus(); // into the list, without a phone's keyboard popping up
  });
  // A tap on the conversation beside the open list folds it, as a menu would.
  $("#main").addEventListener("click", (event) => {
    if (!event.target.closest("#chats-toggle")) foldList();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && $("#app").classList.contains("list-open")) foldList();
  });
}
