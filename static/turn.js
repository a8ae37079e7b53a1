// One turn as it streams: a "generating…" cue until the first token, then the reply grows in
// its own message, followed while the person reads at the bottom; Stop (or Esc) aborts it.
import { keepUp } from "./follow.js";
import { explain } from "./notices.js";
import { fillMessage, messageElement } from "./messages.js";
import { readReply } from "./stream.js";
import { $, state } from "./state.js";

const CUT_OFF = "The connection to chatproxy broke in the middle of the answer. What arrived is kept.";

function setStreaming(on) {
  $("#send").hidden = on;
  $("#stop").hidden = !on;
  document.querySelectorAll(".message .tools button:not(.copy)").forEach((button) => (button.disabled = on));
}

// Screen readers announce the answer once it is whole and shown as stored, not every token
// as it arrives: the view is busy from the start of a turn until its caller says it settled.
export function settled() {
  $("#messages").setAttribute("aria-busy", "false");
}

export function stopStream() {
  if (state.controller) state.controller.abort();
}

function cueElement() {
  const cue = document.createElement("p");
  cue.className = "cue";
  cue.setAttribute("role", "status");
  cue.textContent = "Generating…";
  return cue;
}

// Streams the reply ``open(signal)`` asks for into a new message at the end of the view.
// Resolves to how it went: {stopped} (the person stopped it), {reply} and {arrived} (whether
// any of it came), {problem} (a sentence for the person, or null when all went well).
export async function streamTurn(open) {
  const article = messageElement({ role: "assistant", content: "" }, state.chat.messages.length);
  article.classList.add("streaming");
  const cue = cueElement();
  article.append(cue);
  $("#messages").append(article);
  keepUp({ resume: true });
  const live = { role: "assistant", content: "", reasoning: "" };
  const controller = new AbortController();
  state.controller = controller;
  $("#messages").setAttribute("aria-busy", "true");
  setStreaming(true);
  let scheduled = false;
  const paint = () => {
    scheduled = false;
    fillMessage(article, live);
    if (live.content) cue.remove();
    else cue.textContent = "Thinking…"; // only reasoning so far
    keepUp();
  };
  const outcome = { stopped: false, problem: null };
  try {
    const ending = await readReply(await open(controller.signal), live, () => {
      if (!scheduled) {
        scheduled = true;
        requestAnimationFrame(paint);
      }
    });
    if (ending.error) outcome.problem = `The answer broke off: ${ending.error}. What arrived is kept.`;
    else if (!ending.finished) outcome.problem = CUT_OFF;
  } catch (error) {
    if (error.name === "AbortError") outcome.stopped = true;
    else outcome.problem = error instanceof TypeError ? CUT_OFF : explain(error);
  } finally {
    state.controller = null;
    setStreaming(false);
    article.classList.remove("streaming");
    cue.remove();
  }
  outcome.arrived = Boolean(live.content || live.reasoning);
  outcome.reply = live;
  return outcome;
}
