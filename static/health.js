// LM Studio's state in view: the page asks GET /health on load (and after a turn LM Studio
// refused) and keeps a banner with the fix while LM Studio is unreachable or has no model
// (several upstreams: while one of them is down, named).
import * as server from "./api.js";
import { $ } from "./state.js";

// Why the named upstreams in ``down`` do not answer, in one sentence: their errors name them.
export function whyDown(down) {
  return down.map(({ name, url, error }) => {
    if (!error) return `Upstream "${name}" at ${url} has not answered`;
    const reason = error.replace(/[.\s]+$/, "");
    return reason.includes(`"${name}"`) ? reason : `Upstream "${name}": ${reason}`;
  }).join("; ");
}

function lmStudioProblem(upstream) {
  const where = upstream.url ? ` at ${upstream.url}` : "";
  if (upstream.state !== "up") {
    // The server's sentence (upstream.who's: "LM Studio …") names it and where already.
    const said = upstream.error ? upstream.error.replace(/[.\s]+$/, "") : `LM Studio is not reachable${where}`;
    return ["unreachable", `${said}. Start LM Studio and turn its local server on `
      + "(Developer tab, or lms server start), or point chatproxy at it with upstream.url (or --lm-studio-url); then check again."];
  }
  if (!(upstream.models || []).length) {
    return ["no-model", `LM Studio answers${where} but has no model loaded. Load one in LM Studio (or lms load MODEL), then check again.`];
  }
  return null;
}

// Several upstreams ([[upstreams]]): each one that is down is named; the others still answer.
function upstreamsProblem(upstreams) {
  const down = upstreams.filter((upstream) => upstream.state !== "up");
  if (down.length === upstreams.length) {
    return ["unreachable", `No upstream is reachable: ${whyDown(down)}. Start them, or correct [[upstreams]] in chatproxy's config; then check again.`];
  }
  if (down.length) {
    const [its, it] = down.length === 1 ? ["Its", "it is"] : ["Their", "they are"];
    return ["upstream-down", `${whyDown(down)}. ${its} models answer only where another upstream offers them; check again once ${it} back.`];
  }
  if (!upstreams.some((upstream) => (upstream.models || []).length)) {
    return ["no-model", "The upstreams answer but none has a model loaded. Load one, then check again."];
  }
  return null;
}

function problem(report) {
  const upstreams = report.upstreams || [];
  const found = upstreams.length > 1 ? upstreamsProblem(upstreams) : lmStudioProblem(upstreams[0] || {});
  if (found) return found;
  if (report.chats_dir_writable === false) {
    return ["not-writable", "chatproxy cannot write in its chats folder, so new messages would not be stored. "
      + "Check the folder's permissions and free space, then check again."];
  }
  return ["ok", ""];
}

export async function checkHealth() {
  const banner = $("#lmstudio");
  const button = $("#lmstudio-check");
  let report;
  button.disabled = true; // an LM Studio that hangs takes /health up to two seconds
  try {
    report = await server.health();
  } catch {
    return; // chatproxy itself is unreachable: the next call of the person's says so
  } finally {
    button.disabled = false;
  }
  const [kind, text] = problem(report);
  banner.dataset.state = kind;
  $("#lmstudio-text").textContent = text;
  banner.hidden = !text;
}
