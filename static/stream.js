// Reading a reply's event stream: the SSE framing, then each chunk into the message so far.

async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield data;
    }
  }
}

// Reads ``response`` into ``live`` ({content, reasoning}), calling ``changed`` after each
// chunk. Resolves to how it ended: {finished} (with ``[DONE]``), {error} (an error event),
// or {} when the stream stopped without its last word. Throws what reading throws.
export async function readReply(response, live, changed) {
  for await (const data of sseEvents(response.body)) {
    if (data === "[DONE]") return { finished: true };
    const chunk = JSON.parse(data);
    if (chunk.error) return { error: chunk.error.message || chunk.error };
    const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
    if (delta.content) live.content += delta.content;
    const thought = delta.reasoning_content || delta.reasoning;
    if (thought) live.reasoning += thought;
    changed();
  }
  return {};
}
