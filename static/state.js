// What the page holds between events: the listing, the open chat, the turn it shows.
export const $ = (selector) => document.querySelector(selector);

export const state = {
  chats: [],
  archived: false, // the list shows the archived chats (only)
  name: null, // the open chat
  chat: null,
  branches: [],
  models: [], // the model ids listed (several upstreams: the plain ones, routed)
  upstreams: null, // several upstreams: each one's name, state, error, and the ids it offers
  turn: null, // the turn this page shows streaming: {name, controller, stopping, opened}
};
