// What the page says to the person when something goes wrong.
import { ApiError, Unreachable } from "./api.js";
import { $ } from "./state.js";

export function showBanner(text) {
  const banner = $("#banner");
  banner.textContent = text;
  banner.hidden = !text;
}

export function explain(error) {
  if (error instanceof Unreachable) return error.message;
  if (error instanceof ApiError) {
    if (error.status === 502 || error.status === 504) return `LM Studio is not answering: ${error.message}`;
    return error.message;
  }
  return `Something went wrong: ${error.message || error}`;
}

// Runs an action of the person's; its failure becomes the banner.
export async function guarded(action) {
  try {
    return await action();
  } catch (error) {
    if (error.name !== "AbortError") showBanner(explain(error));
    return undefined;
  }
}
