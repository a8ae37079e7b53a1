// The models the upstreams offer, and the model pickers (New chat, Settings): a list of what
// LM Studio lists (with several upstreams: grouped by upstream, one that is down marked), and
// a field to type a model id when none is listed, or another one.
import { listModels } from "./api.js";
import { whyDown } from "./health.js";
import { explain } from "./notices.js";
import { state } from "./state.js";

const OTHER = ""; // the value of the list's last entry, "Another model id…"

// Asks for the models; resolves to why none could be listed (a sentence), or null. With several
// upstreams GET /v1/models also names each ("upstreams"): state.upstreams holds them, each with
// the ids it offers as NAME/MODEL; state.models holds the plain ids, routed to any upstream.
export async function loadModels() {
  try {
    const payload = await listModels();
    const entries = payload.data || [];
    state.models = entries.filter((model) => !model.upstream).map((model) => model.id);
    state.upstreams = payload.upstreams
      ? payload.upstreams.map((upstream) => ({
        ...upstream,
        offers: entries.filter((model) => model.upstream === upstream.name).map((model) => model.id),
      }))
      : null;
    return null;
  } catch (error) {
    state.models = [];
    state.upstreams = null;
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

function option(value, text = value, disabled = false) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  element.disabled = disabled;
  return element;
}

function group(label, options) {
  const element = document.createElement("optgroup");
  element.label = label;
  element.append(...options);
  return element;
}

// What the picker says of an upstream beside its name: nothing when it answers with a fresh list.
function marker(upstream) {
  if (upstream.state === "down") return "down";
  if (upstream.state !== "up") return "not answered yet";
  return upstream.stale ? "list may be old" : "";
}

// Several upstreams: the plain ids first (chatproxy picks an upstream that offers the model and
// fails over to another), then each upstream's own (NAME/MODEL: that upstream only).
function groupedOptions() {
  const groups = [group("Any upstream", state.models.map((id) => option(id)))];
  for (const upstream of state.upstreams) {
    const mark = marker(upstream);
    const prefix = `${upstream.name}/`;
    const options = upstream.offers.map((id) => option(id, id.startsWith(prefix) ? id.slice(prefix.length) : id));
    if (!options.length) options.push(option(`${upstream.name} lists no model`, "(no model listed)", true));
    groups.push(group(mark ? `${upstream.name} · ${mark}` : upstream.name, options));
  }
  return groups;
}

// The hint under a grouped picker: the upstreams that are down, and why.
function downHint() {
  const down = state.upstreams.filter((upstream) => upstream.state === "down");
  if (!down.length) return "";
  const [its, it] = down.length === 1 ? ["Its", "it is"] : ["Their", "they are"];
  return `${whyDown(down)}. ${its} models do not answer until ${it} back; the same model on another upstream does.`;
}

// Fills the picker in ``form`` with the models and ``current``; ``problem`` is why none could
// be listed (loadModels), said beside the field to type one in.
export function fillPicker(form, current, problem = null) {
  const picker = parts(form);
  const grouped = state.upstreams !== null;
  const listed = grouped ? [...state.models, ...state.upstreams.flatMap((upstream) => upstream.offers)] : state.models;
  const known = listed.includes(current);
  const shown = grouped
    ? [...(current && !known ? [option(current)] : []), ...groupedOptions()]
    : [...new Set([...(current ? [current] : []), ...state.models])].map((id) => option(id));
  picker.list.replaceChildren(...shown, option(OTHER, "Another model id…"));
  const selected = [...picker.list.options].find((each) => each.value === current && !each.disabled);
  if (selected) selected.selected = true;
  picker.typed.value = "";
  const any = listed.length > 0 || Boolean(current);
  picker.listLabel.hidden = !any;
  showTyped(picker, !any);
  const down = grouped ? downHint() : "";
  picker.hint.hidden = any && !down;
  picker.hint.textContent = any
    ? down
    : `${problem || "LM Studio lists no model."} Type the id of the model to use; load it in LM Studio before you send.`;
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
