// One turn as it streams: a "generating…" cue until the first token, then the reply grows in
// its own message, followed while the person reads at the bottom.
//
// The turn is the server's (the page's turns are detached): Stop (or Esc) asks the server to
// stop it; leaving it (another chat opened, a reload) only closes this page's stream and the
// answer runs on. A stream that breaks is joined again after the last event read, so the
// text goes on with no gap and no repeat.
import * as server from "./api.js";
import { loadChats } from "./chatlist.js";
import { keepUp } from "./follow.js";
import { explain, showBanner } from "./notices.js";
import { fillMessage, messageElement } from "./messages.js";
import { readReply } from "./stream.js";
import { $, state } from "./state.js";

const CUT_OFF = "The connection to chatproxy broke in the middle of the answer and could not be joined again. "
  + "What arrived is kept; open the chat again once chatproxy answers to see the rest.";
// The waits before each attempt to join a broken stream again: about 20 s in all.
const REJOIN_DELAYS_MS = [250, 500, 1000, 2000, 4000, 4000, 4000, 4000];

function setStreaming(on) {
  $("#send").hidden = on;
  $("#stop").hidden = !on;
  document.querySelectorAll(".message .tools button:not(.copy)").forEach((button) => (button.disabled = on));
}

// Screen readers announce the answer once it is whole and shown as stored, not every token
// as it arrives: the view is busy from the start of a turn until its caller says it settled.
export function settled() {
  if (!state.turn) $("#messages").setAttribute("aria-busy", "false");
}

// Closes this page's stream of the turn; the turn runs on in the server.
export function leaveTurn() {
  if (!state.turn) return;
  state.turn.controller.abort();
  state.turn = null;
}

// Stop (or Esc): the server stops the turn and stores the part written so far; the stream
// then ends with a last word saying it was stopped.
export async function stopTurn() {
  const turn = state.turn;
  if (!turn || turn.stopping) return;
  turn.stopping = true;
  await askToStop(turn);
}

async function askToStop(turn) {
  try {
    await server.stopTurn(turn.name);
  } catch (error) {
    // 409: no turn runs. It ended meanwhile (its last word is on the way), or the request that
    // starts it has not reached the server yet: asked again once its stream opens.
    if (error.status === 409) turn.askAgain = !turn.opened;
    else showBanner(explain(error));
  }
}

function opened(turn) {
  if (turn.opened) return;
  turn.opened = true;
  if (turn.askAgain) askToStop(turn);
  loadChats().catch(() => {}); // the list marks the chat as being answered; else the next look says it
}

function cueElement() {
  const cue = document.createElement("p");
  cue.className = "cue";
  cue.setAttribute("role", "status");
  cue.textContent = "Generating…";
  return cue;
}

function pause(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("Left", "AbortError"));
    }, { once: true });
  });
}

// Streams the reply ``open(signal)`` answers with (a turn started, or the running one
// attached to) into a new message at the end of the view. Resolves to how it went: {left}
// (the person opened another chat), {stopped}, {absent} (no turn ran any more), {reply} and
// {arrived} (whether any of it came), {problem} (a sentence for the person, or null).
export async function streamTurn(open) {
  const article = messageElement({ role: "assistant", content: "" }, state.chat.messages.length);
  article.classList.add("streaming");
  const cue = cueElement();
  article.append(cue);
  $("#messages").append(article);
  keepUp({ resume: true });
  const live = { role: "assistant", content: "", reasoning: "" };
  const turn = { name: state.name, controller: new AbortController(), stopping: false, opened: false };
  leaveTurn();
  state.turn = turn;
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
  const changed = () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(paint);
    }
  };
  const outcome = { left: false, stopped: false, absent: false, problem: null };
  try {
    Object.assign(outcome, await follow(turn, await open(turn.controller.signal), live, changed));
  } catch (error) {
    if (error.name === "AbortError") outcome.left = true;
    else outcome.problem = explain(error);
  } finally {
    if (state.turn === turn) state.turn = null;
    if (!state.turn) setStreaming(false); // else the page already shows another turn
    article.classList.remove("streaming");
    cue.remove();
  }
  outcome.arrived = Boolean(live.content || live.reasoning);
  outcome.reply = live;
  return outcome;
}

// Reads the turn to its last word, joining its stream again (after the last event read)
// when it breaks. Resolves to the outcome's {stopped}, {absent} or {problem}.
async function follow(turn, response, live, changed) {
  const seen = { id: 0 };
  let attempt = 0;
  for (;;) {
    if (response?.status === 204) return { absent: true }; // it ended while the page was away
    if (response) {
      opened(turn);
      const from = seen.id;
      const ending = (await readReply(response, live, changed, seen).catch(broken)) || {};
      if (ending.finished) return {};
      if (ending.type === "stopped") return { stopped: true };
      if (ending.error) return { problem: `The answer broke off: ${ending.error}. What arrived is kept.` };
      if (seen.id > from) attempt = 0; // it went on for a while: a new break gets every attempt
    }
    if (attempt === REJOIN_DELAYS_MS.length) return { problem: CUT_OFF };
    await pause(REJOIN_DELAYS_MS[attempt++], turn.controller.signal);
    response = await server.watchTurn(turn.name, seen.id, turn.controller.signal).catch(broken);
  }
}

// A stream the network broke (or a server that cannot be reached to join it again): null,
// and the next attempt; anything else is thrown on.
function broken(error) {
  if (error instanceof TypeError || error instanceof server.Unreachable) return null;
  throw error;
}
