// The models LM Studio offers, and the model pickers (New chat, Settings): a list of what
// LM Studio lists, and a field to type a model id when it lists none, or another one.
import { listModels } from "./api.js";
import { explain } from "./notices.js";
import { state } from "./state.js";

const OTHER = ""; // the value of the list's last entry, "Another model id…"

// Asks LM Studio for its models; resolves to why it could not (a sentence), or null.
export async function loadModels() {
  try {
    const payload = await listModels();
    state.models = (payload.data || []).map((model) => model.id);
    return null;
  } catch (error) {
    state.models = [];
    return explain(error);
  }
}

function parts(form) {
  return {
    list: form.querySelector(".model-list select"),
    listLabel: form.querySelector(".model-list"),
    typed: form.querySelector(".model-typed input"),
    typedLabel: form.querySelector(".model-typed"),
    hint: form.querySelector(".model-hint"),
  };
}

function showTyped(picker, typing) {
  picker.typedLabel.hidden = !typing;
  picker.typed.required = typing;
}

// Fills the picker in ``form`` with LM Studio's models and ``current``; ``problem`` is why
// LM Studio listed none (loadModels), said beside the field to type one in.
export function fillPicker(form, current, problem = null) {
  const picker = parts(form);
  const models = [...new Set([...(current ? [current] : []), ...state.models])];
  const options = models.map((id) => {
    const option = document.createElement("option");
    option.value = option.textContent = id;
    option.selected = id === current;
    return option;
  });
  const other = document.createElement("option");
  other.value = OTHER;
  other.textContent = "Another model id…";
  picker.list.replaceChildren(...options, other);
  picker.typed.value = "";
  picker.listLabel.hidden = !models.length;
  showTyped(picker, !models.length);
  picker.hint.hidden = models.length > 0;
  picker.hint.textContent = models.length ? "" : `${problem || "LM Studio lists no model."} Type the id of the model to use; load it in LM Studio before you send.`;
}

// Choosing "Another model id…" shows the field to type it in.
export function wirePicker(form) {
  const picker = parts(form);
  picker.list.addEventListener("change", () => showTyped(picker, picker.list.value === OTHER));
}

// The model the picker in ``form`` names.
export function pickedModel(form) {
  const picker = parts(form);
  return picker.typedLabel.hidden ? picker.list.value : picker.typed.value.trim();
}
