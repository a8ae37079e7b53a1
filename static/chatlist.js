// The chat list in the sidebar: titles, pinned chats first, then newest activity first; the
// archived ones on request; narrowed by the search box. A chat being answered is marked, and
// a chat file that cannot be read is listed as damaged, with why, and cannot be opened.
// Under 700 px it folds away behind the Chats button and comes back over the conversation.
import { listChats } from "./api.js";
import { followListing } from "./header.js";
import { escapeHtml, render } from "./markdown.js";
import { goTo } from "./router.js";
import { $, state } from "./state.js";

let listing = 0; // the latest loadChats: an earlier one that ends later shows nothing
let shown = ""; // the listing on screen, as JSON: the same one again changes nothing

export async function loadChats() {
  const mine = ++listing;
  const searching = $("#search").value.trim();
  const payload = await listChats(searching, state.archived);
  if (mine !== listing) return;
  state.chats = payload.chats;
  followListing(state.chats.find((chat) => chat.name === state.name));
  const text = JSON.stringify([state.archived, state.chats]);
  if (text === shown) return; // the list is read again often: keep the person's place in it
  shown = text;
  const items = state.chats.map((chat) => (chat.damaged ? damagedItem(chat) : chatItem(chat)));
  if (!items.length && state.archived && !searching) items.push(element("li", "empty", "No archived chats."));
  $("#chat-list").replaceChildren(...items);
}

function element(tag, className, text) {
  const made = document.createElement(tag);
  made.className = className;
  made.textContent = text;
  return made;
}

// Words after the title, each with its leading space so the button's accessible name reads
// "TITLE pinned answering…".
const mark = (className, text) => element("span", `mark ${className}`, ` ${text}`);
const titleElement = (text) => element("span", "title", text);

function chatItem(chat) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.name = chat.name;
  if (chat.name === state.name) button.setAttribute("aria-current", "true");
  button.append(titleElement(chat.title || chat.name));
  if (chat.pinned) button.append(mark("pinned", "pinned"));
  if (chat.archived && !state.archived) button.append(mark("archived", "archived")); // a search result
  if (chat.running) button.append(mark("running", "answering…"));
  const detail = document.createElement("span");
  detail.className = chat.snippet ? "snippet" : "model";
  detail.innerHTML = chat.snippet ? render(chat.snippet).replace(/^<p>|<\/p>$/g, "") : escapeHtml(chat.model || "");
  button.append(detail);
  button.addEventListener("click", () => {
    foldList();
    goTo(chat.name);
  });
  item.append(button);
  return item;
}

// A file in the chats folder that is not a readable chat: its name and what is wrong, to fix
// by hand (chatproxy cannot open it).
function damagedItem(chat) {
  const item = element("li", "damaged", "");
  item.append(titleElement(chat.name), element("span", "why", `Damaged, cannot be opened: ${chat.damaged}`));
  return item;
}

export function markCurrent(name) {
  document.querySelectorAll("#chat-list button").forEach((button) => {
    if (button.dataset.name === name) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  });
}

// The archived chats instead of the others (``on``), or the others again.
export async function showArchived(on) {
  state.archived = on;
  $("#archived-toggle").textContent = on ? "Back to chats" : "Archived chats";
  $("#chat-list").setAttribute("aria-label", on ? "Archived chats" : "Chat list");
  $("#archived-heading").hidden = !on;
  await loadChats();
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
