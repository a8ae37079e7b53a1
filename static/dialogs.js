// The chat's own commands: new, rename, delete, settings, export.
import * as server from "./api.js";
import { foldList, loadChats } from "./chatlist.js";
import { reloadChat } from "./conversation.js";
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

export async function createChat(event) {
  event.preventDefault();
  const name = $("#new-name").value;
  if (!(await inDialog("#new-dialog", "#new-error", () => server.createChat(name, pickedModel($("#new-form")))))) return;
  $("#search").value = "";
  await loadChats();
  goTo(name);
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
  goTo(newName, { replace: true }); // the old name's URL leads nowhere now
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
