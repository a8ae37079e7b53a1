// Reading a reply's event stream: the SSE framing, then each chunk into the message so far.

// Each event's data and its ``id:`` (null when it has none); comments (keep-alives) are skipped.
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
      const lines = buffer.slice(0, cut).split("\n");
      buffer = buffer.slice(cut + 2);
      const field = (name) =>
        lines.filter((line) => line.startsWith(`${name}:`)).map((line) => line.slice(name.length + 1).replace(/^ /, ""));
      const data = field("data").join("\n");
      const id = field("id").at(-1);
      if (data) yield { data, id: id === undefined ? null : Number(id) };
    }
  }
}

// Reads ``response`` into ``live`` ({content, reasoning}), calling ``changed`` after each
// chunk; ``seen.id`` follows the number of the last event read, so that a stream that breaks
// can be joined again from there. A snapshot (one chunk with everything so far) reads as any
// chunk. Resolves to how it ended: {finished} (with ``[DONE]``), {error, type} (an error
// event), or {} when the stream stopped without its last word. Throws what reading throws.
export async function readReply(response, live, changed, seen) {
  for await (const { data, id } of sseEvents(response.body)) {
    if (id !== null) seen.id = id;
    if (data === "[DONE]") return { finished: true };
    const chunk = JSON.parse(data);
    if (chunk.error) return { error: chunk.error.message || String(chunk.error), type: chunk.error.type };
    const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
    if (delta.content) live.content += delta.content;
    const thought = delta.reasoning_content || delta.reasoning;
    if (thought) live.reasoning += thought;
    changed();
  }
  return {};
}
