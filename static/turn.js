// One turn as it streams: the reply grows in its own message, Stop (or Esc) aborts it.
import { explain, showBanner } from "./notices.js";
import { fillMessage, messageElement } from "./messages.js";
import { readReply } from "./stream.js";
import { $, state } from "./state.js";

const CUT_OFF = "The connection to chatproxy broke in the middle of the answer. What arrived is kept.";

function setStreaming(on) {
  // Screen readers announce the answer once it is whole, not every token as it arrives.
  $("#messages").setAttribute("aria-busy", String(on));
  $("#send").hidden = on;
  $("#stop").hidden = !on;
  document.querySelectorAll(".message .tools button").forEach((button) => (button.disabled = on));
}

export function stopStream() {
  if (state.controller) state.controller.abort();
}

// Streams the reply ``open(signal)`` asks for into a new message at the end of the view.
// Resolves to {aborted: true} when the person stopped it (what arrived is shown and kept
// in state.chat), else {}: the caller reads the chat again.
export async function streamTurn(open) {
  const messages = $("#messages");
  const article = messageElement({ role: "assistant", content: "" }, state.chat.messages.length);
  article.classList.add("streaming");
  messages.append(article);
  messages.scrollTop = messages.scrollHeight;
  const live = { role: "assistant", content: "", reasoning: "" };
  const controller = new AbortController();
  state.controller = controller;
  setStreaming(true);
  showBanner("");
  let aborted = false;
  let scheduled = false;
  const paint = () => {
    scheduled = false;
    fillMessage(article, live);
    messages.scrollTop = messages.scrollHeight;
  };
  const changed = () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(paint);
    }
  };
  try {
    const ending = await readReply(await open(controller.signal), live, changed);
    if (ending.error) showBanner(`The answer broke off: ${ending.error}. What arrived is kept.`);
    else if (!ending.finished) showBanner(CUT_OFF);
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
  if (!aborted) return {};
  // chatproxy stores what was sent once it sees the client go: show that, not a re-read
  // that may come before it.
  fillMessage(article, live);
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = live.content || live.reasoning ? "Stopped. The part shown is kept." : "Stopped before the answer began.";
  article.append(note);
  if (live.content || live.reasoning) state.chat.messages.push(live);
  return { aborted: true };
}
