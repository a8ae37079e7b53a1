// Following the end of the conversation: the view stays at the bottom while a reply grows,
// until the person scrolls up to read; once they are back at the bottom, it follows again.
import { $ } from "./state.js";

const SLACK_PX = 32; // "at the bottom" allows for rounding and a last line half in view
let following = true;

function atBottom(view) {
  return view.scrollHeight - view.scrollTop - view.clientHeight <= SLACK_PX;
}

export function watchScrolling() {
  const view = $("#messages");
  view.addEventListener("scroll", () => (following = atBottom(view)), { passive: true });
}

// Scrolls to the end if the view follows it; ``resume``: follow it from now on (a chat just
// opened, a turn the person just started).
export function keepUp({ resume = false } = {}) {
  const view = $("#messages");
  if (resume) following = true;
  if (following) view.scrollTop = view.scrollHeight;
}
