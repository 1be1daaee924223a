// One memory's history: who changed it, when, from what to what.

import { $, aboutId, api, clip, h, sameList, timeEl, topicList } from "./core.js";
import { reportStale } from "./edit.js";

// ---------------------------------------------------------------------------------------
// History of one memory

export const EVENT_LABELS = { add: "Added", update: "Updated", delete: "Deleted" };

export function topicChange(before, after) {
  if (before && after && sameList(before, after)) return null;
  return h("div", { class: "topic-change" },
    h("span", { class: "muted small", text: "Topics " }),
    before ? h("del", {}, topicList(before)) : null,
    before && after ? h("span", { class: "arrow", "aria-hidden": "true", text: "→" }) : null,
    after ? h("ins", {}, topicList(after)) : null);
}

export function historyEvent(event) {
  const label = EVENT_LABELS[event.event] || event.event;
  const origin = [`by ${event.actor}`];
  if (event.session_id) origin.push(`session ${clip(event.session_id, 12)}`);
  const body = [];
  if (event.event === "update" && event.old_memory !== event.new_memory) {
    body.push(h("del", { class: "old-text", dir: "auto", text: event.old_memory || "" }));
  }
  if (event.event === "delete") body.push(h("del", { class: "old-text", dir: "auto", text: event.old_memory || "" }));
  else body.push(h("p", { class: "new-text", dir: "auto", text: event.new_memory || "" }));
  if (event.event === "update") body.push(topicChange(event.old_topics, event.new_topics));
  else if (event.event === "add" && event.new_topics && event.new_topics.length) {
    body.push(topicChange(null, event.new_topics));
  }
  const attrs = { class: `event event-${event.event}`, "data-testid": "history-event" };
  return h("li", { ...attrs, dataset: { event: event.event } },
    h("div", { class: "event-head" },
      h("span", { class: `badge badge-${event.event}`, text: label }),
      timeEl(event.created_at),
      h("span", { class: "muted small", text: origin.join(" · ") })),
    h("div", { class: "event-body" }, body));
}

export async function openHistory(memory) {
  const dialog = $("history-dialog");
  $("history-subtitle").textContent = `${memory.user_id} · ${clip(memory.memory, 90)}`;
  $("history-list").replaceChildren(h("li", { class: "muted", text: "Loading…" }));
  dialog.showModal();
  try {
    const [path, query] = aboutId("memory", memory.memory_id, { user_id: memory.user_id }, true);
    const events = await api(path, { query });
    $("history-list").replaceChildren(...events.map(historyEvent));
  } catch (error) {
    dialog.close();
    reportStale(error, "Could not read the history");
  }
}
