// The chat's own commands: new, rename, pin, archive, delete, settings, export.
import * as server from "./api.js";
import { foldList, loadChats, showArchived } from "./chatlist.js";
import { reloadChat } from "./conversation.js";
import { takeMarks } from "./header.js";
import { fillPicker, loadModels, pickedModel } from "./models.js";
import { explain } from "./notices.js";
import { goTo } from "./router.js";
import { $, state } from "./state.js";

export async function newChat() {
  foldList();
  const problem = await loadModels();
  fillPicker($("#new-form"), state.models[0], problem);
  $("#new-name").value = "";
  $("#new-error").hidden = true;
  $("#new-dialog").showModal();
  $("#new-name").focus();
}

// Runs the dialog's ``change``; its failure is said in the dialog, which stays open.
async function inDialog(dialog, errorLine, change) {
  try {
    await change();
  } catch (error) {
    $(errorLine).textContent = explain(error);
    $(errorLine).hidden = false;
    return false;
  }
  $(dialog).close();
  return true;
}

// Without a name the chat gets one of its own, and its first message gives it a title; a name
// given is the title the person sees (set as theirs: the model does not retitle it).
export async function createChat(event) {
  event.preventDefault();
  const name = $("#new-name").value.trim() ? $("#new-name").value : null;
  let created;
  const create = async () => (created = await server.createChat(name, pickedModel($("#new-form"))));
  if (!(await inDialog("#new-dialog", "#new-error", create))) return;
  // Should this fail, the list shows the name anyway until the first message titles the chat.
  if (name) await server.changeChat(created.name, { title: name }).catch(() => {});
  $("#search").value = "";
  if (state.archived) await showArchived(false); // a new chat is not among the archived
  else await loadChats();
  goTo(created.name);
}

export function startRename() {
  $("#rename-chat-title").value = state.chat.title || "";
  $("#rename-name").value = state.name;
  $("#rename-error").hidden = true;
  $("#rename-dialog").showModal();
  $("#rename-chat-title").select();
}

// The title (empty: the first message's again) and the name, each only if it changed.
export async function renameChat(event) {
  event.preventDefault();
  const changes = {};
  const title = $("#rename-chat-title").value.trim();
  if (title !== (state.chat.title || "")) changes.title = title || null;
  const newName = $("#rename-name").value;
  if (newName !== state.name) changes.new_name = newName;
  if (!Object.keys(changes).length) {
    $("#rename-dialog").close();
    return;
  }
  let changed;
  const change = async () => (changed = await server.changeChat(state.name, changes));
  if (!(await inDialog("#rename-dialog", "#rename-error", change))) return;
  if (changes.new_name !== undefined) {
    state.name = changed.name;
    await loadChats();
    goTo(changed.name, { replace: true }); // the old name's URL leads nowhere now
    return;
  }
  keepMarks(changed.chat);
  await loadChats();
}

// Pin or Archive (``mark``: "pinned" or "archived"): set to what it is not, as the button says.
export async function toggleMark(mark) {
  const name = state.name;
  const { chat } = await server.changeChat(name, { [mark]: !state.chat[mark] });
  if (state.name === name) keepMarks(chat);
  await loadChats();
}

// The title, pin and archive of ``chat`` (as a change answered it) in the open chat's header.
function keepMarks(chat) {
  takeMarks(chat, ["title", "pinned", "archived", "updated_at"]);
}

export async function deleteChat() {
  if (!confirm(`Delete the chat "${state.name}"? This cannot be undone.`)) return;
  await server.deleteChat(state.name);
  goTo(null, { replace: true });
  await loadChats();
}

export async function toggleSettings() {
  const form = $("#settings");
  form.hidden = !form.hidden;
  $("#settings-toggle").setAttribute("aria-expanded", String(!form.hidden));
  if (form.hidden) return;
  const problem = await loadModels();
  fillPicker($("#settings"), state.chat.model, problem);
  $("#settings-temperature").value = state.chat.temperature ?? 0.7;
  $("#settings-system").value = state.chat.system_prompt || "";
}

export async function saveSettings(event) {
  event.preventDefault();
  await server.changeChat(state.name, {
    model: pickedModel($("#settings")),
    temperature: Number($("#settings-temperature").value),
    system_prompt: $("#settings-system").value || null,
  });
  await reloadChat();
  await loadChats();
}

export async function exportChat(format) {
  const response = await server.exportChat(state.name, format);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = `${state.name}.${format === "markdown" ? "md" : "json"}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
