// The open chat: showing it, and what the person does in it (send, regenerate, edit, switch
// to another version).
import * as server from "./api.js";
import { loadChats, markCurrent } from "./chatlist.js";
import { addTool, messageElement, versionsElement } from "./messages.js";
import { guarded, showBanner } from "./notices.js";
import { $, state } from "./state.js";
import { stopStream, streamTurn } from "./turn.js";

export async function openChat(name, { keepBanner = false } = {}) {
  stopStream();
  if (!keepBanner) showBanner("");
  const [chatPayload, branchPayload] = await Promise.all([server.getChat(name), server.getBranches(name)]);
  state.name = name;
  state.chat = chatPayload.chat;
  state.branches = branchPayload.branches;
  $("#chat-title").textContent = name;
  $("#chat-header").hidden = false;
  $("#composer").hidden = false;
  $("#empty").hidden = true;
  $("#settings").hidden = true;
  $("#settings-toggle").setAttribute("aria-expanded", "false");
  renderMessages();
  markCurrent(name);
  $("#input").focus();
}

export async function reloadChat() {
  if (state.name) await openChat(state.name, { keepBanner: true });
}

export function closeChat() {
  state.name = state.chat = null;
  $("#chat-header").hidden = $("#composer").hidden = true;
  $("#messages").replaceChildren();
  $("#empty").hidden = false;
}

function renderMessages() {
  const messages = state.chat.messages;
  const list = $("#messages");
  const lastAssistant = messages.map((m) => m.role).lastIndexOf("assistant");
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  list.replaceChildren(
    ...messages.map((message, index) => {
      const article = messageElement(message, index);
      if (message.role === "user") addTool(article, "Edit", () => editMessage(article, index));
      const answersLast = index === lastAssistant && lastAssistant > lastUser;
      const unanswered = index === lastUser && lastUser === messages.length - 1;
      if (answersLast || unanswered) addTool(article, "Regenerate", () => regenerate());
      const branch = state.branches.find((place) => place.index === index);
      if (branch) article.append(branchVersions(branch));
      return article;
    }),
  );
  // A branch that parts at the end of the conversation (e.g. a regenerated last reply).
  const tail = state.branches.find((place) => place.index === messages.length);
  if (tail) list.append(branchVersions(tail));
  list.scrollTop = list.scrollHeight;
}

function branchVersions(branch) {
  return versionsElement(branch, (alternative) =>
    guarded(async () => {
      await server.switchBranch(state.name, branch.index, alternative);
      await reloadChat();
    }),
  );
}

function editMessage(article, index) {
  if (state.controller) return;
  const content = article.querySelector(".content");
  const editor = document.createElement("textarea");
  editor.value = state.chat.messages[index].content;
  editor.rows = 4;
  editor.setAttribute("aria-label", "Edit the message");
  const row = document.createElement("div");
  row.className = "row";
  const button = (label, className = "") => {
    const element = document.createElement("button");
    element.type = "button";
    element.className = className;
    element.textContent = label;
    row.append(element);
    return element;
  };
  const resend = button("Save and resend", "primary");
  const save = button("Save");
  const cancel = button("Cancel");
  content.replaceChildren(editor, row);
  editor.focus();
  cancel.addEventListener("click", () => renderMessages());
  save.addEventListener("click", () =>
    guarded(async () => {
      await server.editMessage(state.name, index, editor.value);
      await reloadChat();
    }),
  );
  resend.addEventListener("click", () => {
    state.chat.messages = state.chat.messages.slice(0, index).concat([{ ...state.chat.messages[index], content: editor.value }]);
    state.branches = [];
    renderMessages();
    runTurn((signal) => server.rerun(state.name, index, editor.value, signal));
  });
}

async function runTurn(open) {
  const outcome = await streamTurn(open);
  if (outcome.aborted) return;
  await guarded(async () => {
    await reloadChat();
    await loadChats();
  });
}

export async function send(event) {
  event?.preventDefault();
  const input = $("#input");
  const content = input.value;
  if (!content.trim() || !state.name || state.controller) return;
  input.value = "";
  const message = { role: "user", content };
  state.chat.messages.push(message);
  $("#messages").append(messageElement(message, state.chat.messages.length - 1));
  const name = state.name;
  await runTurn((signal) => server.sendMessage(name, message, signal));
}

function regenerate() {
  if (state.controller) return;
  const messages = state.chat.messages;
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  state.chat.messages = messages.slice(0, lastUser + 1);
  state.branches = [];
  renderMessages();
  runTurn((signal) => server.regenerate(state.name, signal));
}
