// What the page says to the person when something goes wrong: what happened, and what to do.
import { ApiError, Unreachable } from "./api.js";
import { $ } from "./state.js";

export function showBanner(text) {
  const banner = $("#banner");
  banner.textContent = text;
  banner.hidden = !text;
}

const CHAT_GONE = /^Chat '.*' not found$/s;
const UPSTREAM_NAMED = /^(Upstream "|No upstream)/; // several upstreams: the error names them

// Whether ``text`` (explain's) says an upstream refused or is down: /health is worth asking.
export const upstreamTrouble = (text) => text.startsWith("LM Studio") || UPSTREAM_NAMED.test(text);

export function explain(error) {
  if (error instanceof Unreachable) return error.message;
  if (!(error instanceof ApiError)) return `Something went wrong in the page: ${error.message || error}. Reload the page and try again.`;
  const { status } = error;
  const message = error.message.replace(/[.\s]+$/, ""); // it ends a clause here
  if (UPSTREAM_NAMED.test(message)) return `${message}. Check that upstream, or pick a model another one offers (Settings), then try again.`;
  if (status === 502 || status === 504) {
    return `LM Studio is not answering: ${message}. Start LM Studio, turn its server on and load a model, then try again.`;
  }
  if (message.startsWith("LM Studio")) return `${message}. Check that the chat's model (Settings) is loaded in LM Studio, then try again.`;
  if (status === 413) return `That is too long for this chatproxy: ${message}. Shorten it, or raise the limit in chatproxy's config (limits).`;
  if (status === 500 || status === 507) return `chatproxy could not store the chat: ${message}. Once the chats folder is fixed, try again.`;
  if (status === 503) return `chatproxy is busy: ${message}. Wait a moment, then try again.`;
  if (status === 404 && CHAT_GONE.test(message)) return `${message}: it was deleted or renamed elsewhere. Pick a chat from the list.`;
  return message;
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
