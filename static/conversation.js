// The open chat: showing it, and what the person does in it (send, regenerate, edit, switch
// to another version, retry a question left unanswered). What they typed is never lost: a send
// that fails puts it back, and a question LM Studio refused stays, with Retry and Edit.
import * as server from "./api.js";
import { loadChats, markCurrent } from "./chatlist.js";
import { keepUp } from "./follow.js";
import { showHeader } from "./header.js";
import { checkHealth } from "./health.js";
import { addTool, messageElement, truncationNotice, versionsElement } from "./messages.js";
import { guarded, showBanner, upstreamTrouble } from "./notices.js";
import { $, state } from "./state.js";
import { leaveTurn, settled, streamTurn } from "./turn.js";

let opening = 0; // the latest openChat: an earlier one that ends later shows nothing

// Shows chat ``name``, and the answer it is being given, if any (a turn started before a
// reload, in another tab, by another client); ``again``: it is the open chat, read again (the
// banner and the reader's place in it stay); ``attach``: false to show the chat only.
export async function openChat(name, { again = false, attach = true } = {}) {
  const mine = ++opening;
  leaveTurn();
  if (!again) showBanner("");
  const [chatPayload, branchPayload] = await Promise.all([server.getChat(name), server.getBranches(name)]);
  if (mine !== opening) return;
  state.name = name;
  state.chat = chatPayload.chat;
  state.branches = branchPayload.branches;
  showHeader();
  $("#chat-header").hidden = false;
  $("#composer").hidden = false;
  $("#empty").hidden = true;
  $("#settings").hidden = true;
  $("#settings-toggle").setAttribute("aria-expanded", "false");
  renderMessages();
  keepUp({ resume: !again });
  markCurrent(name);
  if (!again || document.activeElement === document.body) $("#input").focus();
  if (attach && state.chat.running_turn && !state.turn) {
    guarded(() => runTurn((signal) => server.watchTurn(name, null, signal)));
  }
}

export async function reloadChat() {
  if (state.name) await openChat(state.name, { again: true });
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
      if (index === lastAssistant && lastAssistant > lastUser) addTool(article, "Regenerate", () => regenerate());
      if (index === lastUser && lastUser === messages.length - 1) {
        addTool(article, "Retry", () => retry(message.content)); // the last question, without a reply
        if (message.unanswered) article.append(unansweredNote());
      }
      const branch = state.branches.find((place) => place.index === index);
      if (branch) article.append(branchVersions(branch));
      return article;
    }),
  );
  // A branch that parts at the end of the conversation (e.g. a regenerated last reply).
  const tail = state.branches.find((place) => place.index === messages.length);
  if (tail) list.append(branchVersions(tail));
  const notice = truncationNotice(messages);
  if (notice) list.querySelector(`article[data-index="${notice.before}"]`).before(notice.element);
  keepUp();
}

function branchVersions(branch) {
  return versionsElement(branch, (alternative) =>
    guarded(async () => {
      await server.switchBranch(state.name, branch.index, alternative);
      await reloadChat();
    }),
  );
}

function editMessage(article, index, text = state.chat.messages[index].content) {
  if (state.turn) return;
  const content = article.querySelector(".content");
  const editor = document.createElement("textarea");
  editor.value = text;
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
  resend.addEventListener("click", async () => {
    const text = editor.value;
    const { messages } = state.chat;
    const { branches } = state;
    state.chat.messages = messages.slice(0, index).concat([{ ...messages[index], content: text }]);
    state.branches = [];
    renderMessages();
    const turn = await runTurn((signal) => server.rerun(state.name, index, text, signal));
    const showShown = () => {
      state.chat.messages = messages;
      state.branches = branches;
      renderMessages();
    };
    keepTyped(turn, showShown, () => {
      const article = $(`#messages article[data-index="${index}"]`);
      if (article) editMessage(article, index, text);
    });
  });
}

// Runs a turn (or watches the running one), shows where it ended and reads the chat again.
// Resolves to the turn's outcome (turn.js) with {refused}: it failed before any of the answer
// came, and {reread}: the view shows the chat as stored (else as it was shown before the turn).
async function runTurn(open) {
  try {
    const turn = await streamTurn(open);
    if (turn.left) return turn; // another chat was opened: the answer runs on without this view
    turn.refused = turn.problem !== null && !turn.arrived;
    showBanner(turn.problem || "");
    // An upstream refused, or answered while the banner says it is down: look again.
    if ((turn.refused && upstreamTrouble(turn.problem)) || !$("#lmstudio").hidden) checkHealth();
    try {
      // A turn that had ended when the page came to watch it (204) is not attached to again
      // at once: a chat still marked running would repeat that; the list's next look will.
      await openChat(state.name, { again: true, attach: !turn.absent });
      await loadChats();
      turn.reread = true;
    } catch (error) {
      if (turn.problem === null) throw error; // else the banner already says what is wrong
      turn.reread = false;
    }
    if (turn.stopped) noteStopped(turn);
    return turn;
  } finally {
    settled();
  }
}

// The stopped reply, as stored (read again above), says it was stopped.
function noteStopped(turn) {
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = turn.arrived ? "Stopped. The part shown is kept." : "Stopped before the answer began.";
  [...$("#messages").querySelectorAll("article:not(.streaming)")].at(-1)?.append(note);
}

// After a refused turn: the text the person typed goes back where they typed it.
function keepTyped(turn, showShown, restore) {
  if (!turn.refused) return;
  if (!turn.reread) showShown();
  restore();
  const left = turn.reread && state.chat.messages.at(-1)?.unanswered === true; // stored, with Retry
  showBanner(`${turn.problem} What you wrote is kept: ${left ? "Retry it, or send it again," : "send it again"} once that is fixed.`);
}

function unansweredNote() {
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = "Not answered: Retry asks again, Edit changes the question first.";
  return note;
}

// Whether ``message`` is the chat's last question again, left unanswered (LM Studio was down,
// say): the server answers that one rather than storing it twice, so it is shown once.
function repeatsUnanswered(message) {
  const last = state.chat.messages.at(-1);
  return last !== undefined && last.unanswered === true && last.role === message.role && last.content === message.content;
}

export async function send(event) {
  event?.preventDefault();
  const input = $("#input");
  const content = input.value;
  if (!content.trim() || !state.name || state.turn) return;
  input.value = "";
  const name = state.name;
  const shown = state.chat.messages.length;
  const message = { role: "user", content };
  if (!repeatsUnanswered(message)) {
    state.chat.messages.push(message);
    $("#messages").append(messageElement(message, shown));
  }
  const turn = await runTurn((signal) => server.sendMessage(name, message, signal));
  const showShown = () => {
    state.chat.messages.length = shown;
    renderMessages();
  };
  keepTyped(turn, showShown, () => {
    input.value = input.value ? `${content}\n\n${input.value}` : content;
    input.focus();
  });
}

// Retry: the last question, left without a reply, is answered. The composer held it again
// if a refused send put it back: asked here, it is not left there to be asked twice.
function retry(question) {
  if (state.turn) return;
  if ($("#input").value === question) $("#input").value = "";
  regenerate();
}

function regenerate() {
  if (state.turn) return;
  const messages = state.chat.messages;
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  state.chat.messages = messages.slice(0, lastUser + 1);
  state.branches = [];
  renderMessages();
  runTurn((signal) => server.regenerate(state.name, signal));
}
