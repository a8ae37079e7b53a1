// The models LM Studio offers, and the pickers that choose one.
import { listModels } from "./api.js";
import { explain, showBanner } from "./notices.js";
import { state } from "./state.js";

export async function loadModels() {
  try {
    const payload = await listModels();
    state.models = (payload.data || []).map((model) => model.id);
  } catch (error) {
    state.models = [];
    showBanner(explain(error));
  }
}

export function fillModels(select, current) {
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
