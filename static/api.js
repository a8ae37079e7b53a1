// Everything that talks to chatproxy's HTTP API: the token, the one error shape, one function
// per route the page calls. Streamed routes hand back the open Response (stream.js reads it).
import { $ } from "./state.js";

const TOKEN_KEY = "chatproxy.token";

export class Unreachable extends Error {}

export class ApiError extends Error {
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
    throw new Unreachable(`chatproxy is unreachable (${location.host}): is the server running? Start it, then try again.`);
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

// A response that must be a success (a stream, a download); the error shape otherwise.
async function opened(method, path, body, signal) {
  const response = await request(method, path, body, signal);
  if (!response.ok) throw await failure(response);
  return response;
}

const q = (name) => encodeURIComponent(name);

// -- the routes -------------------------------------------------------------------------------

// The chats as the list shows them: pinned first, then newest activity first, archived ones
// left out (``archived``: those only); a search (``query``): every chat that matches, best first.
export const listChats = (query, archived = false) =>
  api("GET", query ? `/chats?q=${q(query)}` : `/chats?sort=recent${archived ? "&archived=only" : ""}`);
export const getChat = (name) => api("GET", `/chat?name=${q(name)}`);
export const getBranches = (name) => api("GET", `/chat/branches?name=${q(name)}`);
// Without a name the chat gets one of its own (the answer's ``name``).
export const createChat = (name, model) => api("POST", "/chat", name ? { name, model } : { model });
export const changeChat = (name, changes) => api("PATCH", "/chat", { name, ...changes });
export const deleteChat = (name) => api("DELETE", `/chat?name=${q(name)}`);
export const editMessage = (name, index, content) => api("PUT", "/chat/message", { name, index, content });
export const switchBranch = (name, index, alternative) => api("POST", "/chat/branch", { name, index, alternative });
export const listModels = () => api("GET", "/v1/models");

// /health answers 503 with the same report when something is wrong: both are read.
export async function health() {
  const response = await request("GET", "/health");
  return response.json();
}
export const exportChat = (name, format) => opened("GET", `/chat/export?name=${q(name)}&format=${format}`);

// The turns: each answers with the reply as an event stream. They are detached: the page
// leaving (a reload, another chat opened, a lost network) does not stop them; Stop does.
export const sendMessage = (name, message, signal) => opened("PUT", "/chat", { name, message, detach: true }, signal);
export const regenerate = (name, signal) => opened("POST", "/chat/regenerate", { name, detach: true }, signal);
export const rerun = (name, index, content, signal) =>
  opened("PUT", "/chat/message", { name, index, content, rerun: true, detach: true }, signal);
// The chat's running turn: everything so far in one event, then the rest (with ``after``: the
// events after that number only); 204 when no turn runs.
export const watchTurn = (name, after, signal) =>
  opened("GET", `/chat/stream?name=${q(name)}${after === null ? "" : `&after=${after}`}`, undefined, signal);
export const stopTurn = (name) => api("POST", "/chat/stop", { name });

// -- the token --------------------------------------------------------------------------------

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
