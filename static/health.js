// LM Studio's state in view: the page asks GET /health on load (and after a turn LM Studio
// refused) and keeps a banner with the fix while LM Studio is unreachable or has no model.
import * as server from "./api.js";
import { $ } from "./state.js";

function problem(report) {
  // The first upstream that is not up, else the first (GET /health lists each).
  const upstreams = report.upstreams || [];
  const upstream = upstreams.find((each) => each.state !== "up") || upstreams[0] || {};
  const where = upstream.url ? ` at ${upstream.url}` : "";
  if (upstream.state !== "up") {
    const why = upstream.error ? ` (${upstream.error.replace(/[.\s]+$/, "")})` : "";
    return ["unreachable", `LM Studio is not reachable${where}${why}. Start LM Studio and turn its local server on `
      + "(Developer tab, or lms server start), or point chatproxy at it with lm_studio.url; then check again."];
  }
  if (!(upstream.models || []).length) {
    return ["no-model", `LM Studio answers${where} but has no model loaded. Load one in LM Studio (or lms load MODEL), then check again.`];
  }
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
