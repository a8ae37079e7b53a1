// What the page holds between events: the listing, the open chat, the running stream.
export const $ = (selector) => document.querySelector(selector);

export const state = {
  chats: [],
  name: null, // the open chat
  chat: null,
  branches: [],
  models: [],
  controller: null, // the AbortController of the running stream
};
