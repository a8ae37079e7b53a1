// chatproxy's own chat page: the chat routes of this server, nothing else, no build step.
import { escapeHtml, render } from "./markdown.js";

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = "chatproxy.token";
const THEME_KEY = "chatproxy.theme";
const CUT_OFF = "The connection to chatproxy broke in the middle of the answer. What arrived is kept.";

const state = {
  chats: [],
  name: null, // the open chat
  chat: null,
  branches: [],
  models: [],
  controller: null, // the AbortController of the running stream
};

// -- talking to chatproxy -------------------------------------------------------------------

class Unreachable extends Error {}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function request(method, path, body, signal) {
  const options = { method, headers: { ...authHeaders() }, signal };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Unreachable(`chatproxy is unreachable (${location.host}): is the server running?`);
  }
  if (response.status === 401) {
    await askForToken(localStorage.getItem(TOKEN_KEY) ? "That token was refused." : "");
    return request(method, path, body, signal);
  }
  return response;
}

// chatproxy's one error shape, {"status": "error", "message": ...}, as an ApiError.
async function failure(response) {
  const payload = await response.json().catch(() => ({}));
  return new ApiError(response.status, payload.message || `${response.status} ${response.statusText}`);
}

async function api(method, path, body) {
  const response = await request(method, path, body);
  if (!response.ok) throw await failure(response);
  return response.json();
}

const q = (name) => encodeURIComponent(name);

let tokenWaiters = null;

function askForToken(problem) {
  if (tokenWaiters) return new Promise((resolve) => tokenWaiters.push(resolve));
  tokenWaiters = [];
  const dialog = $("#token-dialog");
  const error = $("#token-error");
  error.hidden = !problem;
  error.textContent = problem;
  $("#token-input").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    $("#token-form").onsubmit = () => {
      localStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
      dialog.close();
      const waiters = tokenWaiters;
      tokenWaiters = null;
      resolve();
      waiters.forEach((waiter) => waiter());
    };
  });
}

// -- messages to the person -----------------------------------------------------------------

function showBanner(text) {
  const banner = $("#banner");
  banner.textContent = text;
  banner.hidden = !text;
}

function explain(error) {
  if (error instanceof Unreachable) return error.message;
  if (error instanceof ApiError) {
    if (error.status === 502 || error.status === 504) return `LM Studio is not answering: ${error.message}`;
    return error.message;
  }
  return `Something went wrong: ${error.message || error}`;
}

async function guarded(action) {
  try {
    return await action();
  } catch (error) {
    if (error.name !== "AbortError") showBanner(explain(error));
    return undefined;
  }
}

// -- the chat list --------------------------------------------------------------------------

async function loadChats() {
  const query = $("#search").value.trim();
  const payload = await api("GET", query ? `/chats?q=${q(query)}` : "/chats");
  state.chats = payload.chats;
  const list = $("#chat-list");
  list.replaceChildren(
    ...state.chats.map((chat) => {
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
      button.addEventListener("click", () => guarded(() => openChat(chat.name)));
      item.append(button);
      return item;
    }),
  );
}

async function loadModels() {
  try {
    const payload = await api("GET", "/v1/models");
    state.models = (payload.data || []).map((model) => model.id);
  } catch (error) {
    state.models = [];
    showBanner(explain(error));
  }
}

function fillModels(select, current) {
  const models = [...new Set([...(current ? [current] : []), ...state.models])];
  select.replaceChildren(
    ...models.map((id) => {
      const option = document.createElement("option");
      option.value = option.textContent = id;
      option.selected = id === current;
      return option;
    }),
  );
}

// -- one chat -------------------------------------------------------------------------------

async function openChat(name, { keepBanner = false } = {}) {
  stopStream();
  if (!keepBanner) showBanner("");
  const [chatPayload, branchPayload] = await Promise.all([
    api("GET", `/chat?name=${q(name)}`),
    api("GET", `/chat/branches?name=${q(name)}`),
  ]);
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
  document.querySelectorAll("#chat-list button").forEach((button) => {
    if (button.dataset.name === name) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  });
  $("#input").focus();
}

async function reloadChat() {
  if (state.name) await openChat(state.name, { keepBanner: true });
}

function splitThink(text) {
  if (!text.includes("<think>")) return { answer: text, reasoning: "" };
  const reasoning = [];
  const answer = text.replace(/<think>([\s\S]*?)(<\/think>|$)/g, (_, inner) => {
    reasoning.push(inner.trim());
    return "";
  });
  return { answer: answer.trimStart(), reasoning: reasoning.filter(Boolean).join("\n\n") };
}

function stats(message) {
  const parts = [];
  if (message.model) parts.push(message.model);
  const usage = message.usage;
  const timings = message.timings;
  if (usage && usage.completion_tokens != null) parts.push(`${usage.completion_tokens} tokens`);
  if (usage && timings && timings.total_ms && usage.completion_tokens) {
    const generating = (timings.total_ms - (timings.first_token_ms || 0)) / 1000;
    if (generating > 0) parts.push(`${(usage.completion_tokens / generating).toFixed(1)} tokens/s`);
  }
  if (timings && timings.first_token_ms != null) parts.push(`first token ${Math.round(timings.first_token_ms)} ms`);
  if (message.finish_reason === "length") parts.push("stopped at max tokens");
  if (message.interrupted) parts.push("interrupted");
  return parts.join(" · ");
}

function messageElement(message, index) {
  const article = document.createElement("article");
  article.className = `message ${message.role}`;
  article.dataset.index = index;
  const header = document.createElement("header");
  const role = document.createElement("span");
  role.textContent = message.role === "user" ? "You" : message.role === "assistant" ? "Assistant" : message.role;
  const tools = document.createElement("span");
  tools.className = "tools";
  header.append(role, tools);
  article.append(header);

  const reasoning = document.createElement("details");
  reasoning.className = "reasoning";
  reasoning.innerHTML = "<summary>Reasoning</summary><div class=\"reasoning-text\"></div>";
  const content = document.createElement("div");
  content.className = "content";
  const footer = document.createElement("div");
  footer.className = "stats";
  article.append(reasoning, content, footer);
  fillMessage(article, message);

  const branch = state.branches.find((place) => place.index === index);
  if (branch) article.append(versionsElement(branch));
  return article;
}

function fillMessage(article, message) {
  const { answer, reasoning: inlineReasoning } = splitThink(message.content || "");
  const reasoning = [message.reasoning, inlineReasoning].filter(Boolean).join("\n\n");
  const details = article.querySelector("details.reasoning");
  details.hidden = !reasoning;
  details.querySelector(".reasoning-text").innerHTML = render(reasoning);
  article.querySelector(".content").innerHTML = render(answer);
  article.querySelector(".stats").textContent = message.role === "assistant" ? stats(message) : "";
}

function versionsElement(branch) {
  const details = document.createElement("details");
  details.className = "versions";
  const count = branch.alternatives.length;
  details.innerHTML = `<summary>${count} other version${count === 1 ? "" : "s"} from here</summary>`;
  for (const alternative of branch.alternatives) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = alternative.preview || "(empty)";
    button.setAttribute("aria-label", `Show this version: ${alternative.preview}`);
    button.addEventListener("click", () =>
      guarded(async () => {
        await api("POST", "/chat/branch", { name: state.name, index: branch.index, alternative: alternative.alternative });
        await reloadChat();
      }),
    );
    details.append(button);
  }
  return details;
}

function addTool(article, label, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", action);
  article.querySelector(".tools").append(button);
  return button;
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
      return article;
    }),
  );
  // A branch that parts at the end of the conversation (e.g. a regenerated last reply).
  const tail = state.branches.find((place) => place.index === messages.length);
  if (tail) list.append(versionsElement(tail));
  list.scrollTop = list.scrollHeight;
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
  const resend = document.createElement("button");
  resend.type = "button";
  resend.className = "primary";
  resend.textContent = "Save and resend";
  const save = document.createElement("button");
  save.type = "button";
  save.textContent = "Save";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  row.append(resend, save, cancel);
  content.replaceChildren(editor, row);
  editor.focus();
  cancel.addEventListener("click", () => renderMessages());
  save.addEventListener("click", () =>
    guarded(async () => {
      await api("PUT", "/chat/message", { name: state.name, index, content: editor.value });
      await reloadChat();
    }),
  );
  resend.addEventListener("click", () => {
    state.chat.messages = state.chat.messages.slice(0, index).concat([{ ...state.chat.messages[index], content: editor.value }]);
    state.branches = [];
    renderMessages();
    streamTurn("PUT", "/chat/message", { name: state.name, index, content: editor.value, rerun: true });
  });
}

// -- streaming a reply ----------------------------------------------------------------------

function setStreaming(on) {
  // Screen readers announce the answer once it is whole, not every token as it arrives.
  $("#messages").setAttribute("aria-busy", String(on));
  $("#send").hidden = on;
  $("#stop").hidden = !on;
  document.querySelectorAll(".message .tools button").forEach((button) => (button.disabled = on));
}

function stopStream() {
  if (state.controller) state.controller.abort();
}

async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield data;
    }
  }
}

async function streamTurn(method, path, body) {
  const article = messageElement({ role: "assistant", content: "" }, state.chat.messages.length);
  article.classList.add("streaming");
  $("#messages").append(article);
  $("#messages").scrollTop = $("#messages").scrollHeight;
  const live = { role: "assistant", content: "", reasoning: "" };
  const controller = new AbortController();
  state.controller = controller;
  setStreaming(true);
  showBanner("");
  let finished = false;
  let aborted = false;
  let scheduled = false;
  const paint = () => {
    scheduled = false;
    fillMessage(article, live);
    $("#messages").scrollTop = $("#messages").scrollHeight;
  };
  try {
    const response = await request(method, path, body, controller.signal);
    if (!response.ok) throw await failure(response);
    for await (const data of sseEvents(response.body)) {
      if (data === "[DONE]") {
        finished = true;
        break;
      }
      const chunk = JSON.parse(data);
      if (chunk.error) {
        finished = true;
        showBanner(`The answer broke off: ${chunk.error.message || chunk.error}. What arrived is kept.`);
        break;
      }
      const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
      if (delta.content) live.content += delta.content;
      const thought = delta.reasoning_content || delta.reasoning;
      if (thought) live.reasoning += thought;
      if (!scheduled) {
        scheduled = true;
        requestAnimationFrame(paint);
      }
    }
    if (!finished) showBanner(CUT_OFF);
  } catch (error) {
    if (error.name === "AbortError") {
      aborted = true;
    } else if (error instanceof TypeError) {
      showBanner(CUT_OFF);
    } else {
      showBanner(explain(error));
    }
  } finally {
    state.controller = null;
    setStreaming(false);
    article.classList.remove("streaming");
  }
  if (aborted) {
    // chatproxy stores what was sent once it sees the client go: show that, not a re-read
    // that may come before it.
    fillMessage(article, live);
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = live.content || live.reasoning ? "Stopped. The part shown is kept." : "Stopped before the answer began.";
    article.append(note);
    if (live.content || live.reasoning) state.chat.messages.push(live);
    return;
  }
  await guarded(async () => {
    await reloadChat();
    await loadChats();
  });
}

async function send(event) {
  event?.preventDefault();
  const input = $("#input");
  const content = input.value;
  if (!content.trim() || !state.name || state.controller) return;
  input.value = "";
  const message = { role: "user", content };
  state.chat.messages.push(message);
  $("#messages").append(messageElement(message, state.chat.messages.length - 1));
  await streamTurn("PUT", "/chat", { name: state.name, message });
}

function regenerate() {
  if (state.controller) return;
  const messages = state.chat.messages;
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  state.chat.messages = messages.slice(0, lastUser + 1);
  state.branches = [];
  renderMessages();
  streamTurn("POST", "/chat/regenerate", { name: state.name });
}

// -- dialogs and settings --------------------------------------------------------------------

async function newChat() {
  await loadModels();
  fillModels($("#new-model"), state.models[0]);
  $("#new-name").value = "";
  $("#new-error").hidden = true;
  $("#new-dialog").showModal();
  $("#new-name").focus();
}

async function createChat(event) {
  event.preventDefault();
  const name = $("#new-name").value;
  try {
    await api("POST", "/chat", { name, model: $("#new-model").value });
  } catch (error) {
    $("#new-error").textContent = explain(error);
    $("#new-error").hidden = false;
    return;
  }
  $("#new-dialog").close();
  $("#search").value = "";
  await loadChats();
  await openChat(name);
}

async function renameChat(event) {
  event.preventDefault();
  const newName = $("#rename-name").value;
  try {
    await api("PATCH", "/chat", { name: state.name, new_name: newName });
  } catch (error) {
    $("#rename-error").textContent = explain(error);
    $("#rename-error").hidden = false;
    return;
  }
  $("#rename-dialog").close();
  state.name = newName;
  await loadChats();
  await openChat(newName);
}

async function deleteChat() {
  if (!confirm(`Delete the chat "${state.name}"? This cannot be undone.`)) return;
  await api("DELETE", `/chat?name=${q(state.name)}`);
  state.name = state.chat = null;
  $("#chat-header").hidden = $("#composer").hidden = true;
  $("#messages").replaceChildren();
  $("#empty").hidden = false;
  await loadChats();
}

async function toggleSettings() {
  const form = $("#settings");
  form.hidden = !form.hidden;
  $("#settings-toggle").setAttribute("aria-expanded", String(!form.hidden));
  if (form.hidden) return;
  await loadModels();
  fillModels($("#settings-model"), state.chat.model);
  $("#settings-temperature").value = state.chat.temperature ?? 0.7;
  $("#settings-system").value = state.chat.system_prompt || "";
}

async function saveSettings(event) {
  event.preventDefault();
  await api("PATCH", "/chat", {
    name: state.name,
    model: $("#settings-model").value,
    temperature: Number($("#settings-temperature").value),
    system_prompt: $("#settings-system").value || null,
  });
  await reloadChat();
  await loadChats();
}

async function exportChat(format) {
  const response = await request("GET", `/chat/export?name=${q(state.name)}&format=${format}`);
  if (!response.ok) throw await failure(response);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = `${state.name}.${format === "markdown" ? "md" : "json"}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const theme = dark ? "light" : "dark";
  localStorage.setItem(THEME_KEY, theme);
  applyTheme(theme);
}

// -- wiring ---------------------------------------------------------------------------------

function wire() {
  applyTheme(localStorage.getItem(THEME_KEY));
  $("#theme").addEventListener("click", toggleTheme);
  $("#new-chat").addEventListener("click", () => guarded(newChat));
  $("#new-form").addEventListener("submit", (event) => guarded(() => createChat(event)));
  $("#new-cancel").addEventListener("click", () => $("#new-dialog").close());
  $("#rename").addEventListener("click", () => {
    $("#rename-name").value = state.name;
    $("#rename-error").hidden = true;
    $("#rename-dialog").showModal();
  });
  $("#rename-form").addEventListener("submit", (event) => guarded(() => renameChat(event)));
  $("#rename-cancel").addEventListener("click", () => $("#rename-dialog").close());
  $("#delete").addEventListener("click", () => guarded(deleteChat));
  $("#settings-toggle").addEventListener("click", () => guarded(toggleSettings));
  $("#settings").addEventListener("submit", (event) => guarded(() => saveSettings(event)));
  $("#export-json").addEventListener("click", () => guarded(() => exportChat("json")));
  $("#export-md").addEventListener("click", () => guarded(() => exportChat("markdown")));
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
