// One message as the page shows it: Markdown, reasoning folded away, figures, other versions,
// copy buttons. These build elements only; what the other buttons do is the caller's.
import { addCodeCopyButtons, copyButton } from "./copy.js";
import { render } from "./markdown.js";

const shown = new WeakMap(); // article -> the message it shows now (a streamed one grows)

function splitThink(text) {
  if (!text.includes("<think>")) return { answer: text, reasoning: "" };
  const reasoning = [];
  const answer = text.replace(/<think>([\s\S]*?)(<\/think>|$)/g, (_, inner) => {
    reasoning.push(inner.trim());
    return "";
  });
  return { answer: answer.trimStart(), reasoning: reasoning.filter(Boolean).join("\n\n") };
}

// Which upstream answered (named upstreams only), and the ones it failed over from.
function answeredBy(message) {
  const failed = (message.failed_over || []).map((attempt) => attempt.upstream);
  return failed.length ? `answered by ${message.upstream} after ${failed.join(", ")} failed` : `answered by ${message.upstream}`;
}

function stats(message) {
  const parts = [];
  if (message.model) parts.push(message.model);
  if (message.upstream) parts.push(answeredBy(message));
  const usage = message.usage;
  const timings = message.timings;
  if (usage && usage.completion_tokens != null) parts.push(`${usage.completion_tokens} tokens`);
  if (usage && timings && timings.total_ms && usage.completion_tokens) {
    const generating = (timings.total_ms - (timings.first_token_ms || 0)) / 1000;
    if (generating > 0) parts.push(`${(usage.completion_tokens / generating).toFixed(1)} tokens/s`);
  }
  if (timings && timings.first_token_ms != null) parts.push(`first token ${Math.round(timings.first_token_ms)} ms`);
  if (message.finish_reason === "length") parts.push("stopped at max tokens");
  if (message.interrupted) parts.push("interrupted");
  return parts.join(" · ");
}

export function messageElement(message, index) {
  const article = document.createElement("article");
  article.className = `message ${message.role}`;
  article.dataset.index = index;
  const header = document.createElement("header");
  const role = document.createElement("span");
  role.textContent = message.role === "user" ? "You" : message.role === "assistant" ? "Assistant" : message.role;
  const tools = document.createElement("span");
  tools.className = "tools";
  tools.append(copyButton("Copy message", () => splitThink(shown.get(article).content || "").answer));
  header.append(role, tools);
  article.append(header);

  const reasoning = document.createElement("details");
  reasoning.className = "reasoning";
  reasoning.innerHTML = "<summary>Reasoning</summary><div class=\"reasoning-text\"></div>";
  const content = document.createElement("div");
  content.className = "content";
  const footer = document.createElement("div");
  footer.className = "stats";
  article.append(reasoning, content, footer);
  fillMessage(article, message);
  return article;
}

export function fillMessage(article, message) {
  shown.set(article, message);
  const { answer, reasoning: inlineReasoning } = splitThink(message.content || "");
  const reasoning = [message.reasoning, inlineReasoning].filter(Boolean).join("\n\n");
  const details = article.querySelector("details.reasoning");
  details.hidden = !reasoning;
  details.querySelector(".reasoning-text").innerHTML = render(reasoning);
  const content = article.querySelector(".content");
  content.innerHTML = render(answer);
  addCodeCopyButtons(content);
  const footer = article.querySelector(".stats");
  footer.textContent = message.role === "assistant" ? stats(message) : "";
  // Why the upstreams before it failed, for the curious (a hover, a long press).
  footer.title = (message.failed_over || []).map((attempt) => attempt.error).join("\n");
}

// The other versions from one place in the conversation; ``pick(alternative)`` shows one.
export function versionsElement(branch, pick) {
  const details = document.createElement("details");
  details.className = "versions";
  const count = branch.alternatives.length;
  details.innerHTML = `<summary>${count} other version${count === 1 ? "" : "s"} from here</summary>`;
  for (const alternative of branch.alternatives) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = alternative.preview || "(empty)";
    button.setAttribute("aria-label", `Show this version: ${alternative.preview}`);
    button.addEventListener("click", () => pick(alternative.alternative));
    details.append(button);
  }
  return details;
}

// The latest reply sent without older messages (the chat outgrew the model's context) says so
// above the first message sent after the gap: {before: that message's index, element}, or null.
export function truncationNotice(messages) {
  const reply = messages.findLast((message) => message.truncated);
  if (!reply) return null;
  const { left_out: [first, last], context_length: context } = reply.truncated;
  if (!(last + 1 < messages.length)) return null;
  const notice = document.createElement("p");
  notice.className = "context-note";
  const which = first === last ? `Older message ${first + 1} was` : `Older messages ${first + 1}–${last + 1} were`;
  const size = context ? ` (context ${context.toLocaleString("en")} tokens)` : "";
  notice.textContent = `${which} not sent to the model${size}.`;
  return { before: last + 1, element: notice };
}

export function addTool(article, label, action) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", action);
  article.querySelector(".tools").append(button);
  return button;
}
