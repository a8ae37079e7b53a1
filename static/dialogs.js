// The chat's own commands: new, rename, delete, settings, export.
import * as server from "./api.js";
import { loadChats } from "./chatlist.js";
import { closeChat, openChat, reloadChat } from "./conversation.js";
import { fillModels, loadModels } from "./models.js";
import { explain } from "./notices.js";
import { $, state } from "./state.js";

export async function newChat() {
  await loadModels();
  fillModels($("#new-model"), state.models[0]);
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

export async function createChat(event) {
  event.preventDefault();
  const name = $("#new-name").value;
  if (!(await inDialog("#new-dialog", "#new-error", () => server.createChat(name, $("#new-model").value)))) return;
  $("#search").value = "";
  await loadChats();
  await openChat(name);
}

export function startRename() {
  $("#rename-name").value = state.name;
  $("#rename-error").hidden = true;
  $("#rename-dialog").showModal();
}

export async function renameChat(event) {
  event.preventDefault();
  const newName = $("#rename-name").value;
  if (!(await inDialog("#rename-dialog", "#rename-error", () => server.changeChat(state.name, { new_name: newName })))) return;
  state.name = newName;
  await loadChats();
  await openChat(newName);
}

export async function deleteChat() {
  if (!confirm(`Delete the chat "${state.name}"? This cannot be undone.`)) return;
  await server.deleteChat(state.name);
  closeChat();
  await loadChats();
}

export async function toggleSettings() {
  const form = $("#settings");
  form.hidden = !form.hidden;
  $("#settings-toggle").setAttribute("aria-expanded", String(!form.hidden));
  if (form.hidden) return;
  await loadModels();
  fillModels($("#settings-model"), state.chat.model);
  $("#settings-temperature").value = state.chat.temperature ?? 0.7;
  $("#settings-system").value = state.chat.system_prompt || "";
}

export async function saveSettings(event) {
  event.preventDefault();
  await server.changeChat(state.name, {
    model: $("#settings-model").value,
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
