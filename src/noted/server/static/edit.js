// Creating, editing and deleting memories, one at a time or selected together.

import {
  $, aboutId, api, ApiError, charCount, clip, MAX_BULK, MAX_MEMORY_CHARS, notify, parseTopics, plural,
  report, sameList, showError, state,
} from "./core.js";
import { refreshAll, renderMemories } from "./memories.js";
import { selectUser } from "./users.js";

// ---------------------------------------------------------------------------------------
// Create, edit, delete

export function openCreate() {
  $("create-form").hidden = false;
  $("new-memory").setAttribute("aria-expanded", "true");
  $("new-user").value = state.user === null ? "" : state.user;
  createError("");
  updateCounter();
  $("new-text").focus();
}

export function closeCreate() {
  $("create-form").reset();
  $("create-form").hidden = true;
  $("new-memory").setAttribute("aria-expanded", "false");
  $("new-memory").focus();
}

// Keys in the New memory form, as in a row's edit: Escape cancels, Ctrl+Enter in the text
// saves (Enter in a one-line field saves too, as in any form).
export function onCreateKey(event) {
  if (event.key === "Escape") {
    event.preventDefault();
    closeCreate();
  } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target === $("new-text")) {
    event.preventDefault();
    $("create-form").requestSubmit();
  }
}

export function createError(message) {
  $("create-error").textContent = message;
  $("create-error").hidden = !message;
}

export function updateCounter() {
  const length = charCount($("new-text").value);
  $("new-text-count").textContent = `${length.toLocaleString()} / 5,000`;
  $("new-text-count").classList.toggle("is-over", length > MAX_MEMORY_CHARS);
  $("new-text-count").hidden = length === 0;
}

export function tooLong(text) {
  const count = charCount(text);
  return count > MAX_MEMORY_CHARS
    ? `A memory holds at most 5,000 characters; this one has ${count.toLocaleString()}.`
    : "";
}

export async function onCreate(event) {
  event.preventDefault();
  const text = $("new-text").value.trim();
  const refused = text ? tooLong(text) : "Write what the agent should remember.";
  if (refused) {
    createError(refused);
    $("new-text").focus();
    return;
  }
  const body = { memory: text, topics: parseTopics($("new-topics").value) };
  const user = state.tokenUser || $("new-user").value.trim();
  if (user) body.user_id = user;
  $("create-submit").disabled = true;
  try {
    const created = await api("/memories", { method: "POST", body });
    closeCreate();
    notify(`Saved a memory for ${created.user_id}`);
    state.page = 1;
    if (state.user !== null && state.user !== created.user_id) selectUser(created.user_id);
    await refreshAll();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) report(error);
    else createError(error.message);
  } finally {
    $("create-submit").disabled = false;
  }
}

export function startEdit(memoryId) {
  state.editing = memoryId;
  state.draft = null;
  renderMemories();
  const area = document.querySelector("#memory-rows .edit-text");
  if (area) area.focus();
}

export function cancelEdit() {
  state.editing = null;
  renderMemories();
}

// A stored text as its edit box gives it back: an edit box's line breaks are "\n", so a
// text stored with "\r\n" ones (imported from a Windows file) is the same text.
function asEdited(text) {
  return text.replace(/\r\n?/g, "\n").trim();
}

export async function saveEdit(memory, text, topicsText) {
  const body = {};
  const trimmed = text.trim();
  if (!trimmed) {
    showError("A memory needs some text: delete it instead if it should go.");
    return;
  }
  // the text as stored passes (one stored through the library with a higher limit)
  const same = trimmed === asEdited(memory.memory);
  const refused = same ? "" : tooLong(trimmed);
  if (refused) {
    showError(refused);
    return;
  }
  const topics = parseTopics(topicsText);
  if (!same) body.memory = trimmed;
  // topics left as shown stay as they are (one may hold a comma); a damaged memory's
  // are always sent: saving it gives it the topics typed, which repairs it
  const changed = topicsText !== memory.topics.join(", ") && !sameList(topics, memory.topics);
  if (memory.damaged || changed) {
    body.topics = topics;
  }
  if (Object.keys(body).length === 0) {
    cancelEdit();
    return;
  }
  body.if_updated_at = memory.updated_at; // written only if nobody changed it since
  try {
    const [path, query] = aboutId("memory", memory.memory_id, { user_id: memory.user_id });
    await api(path, { method: "PATCH", query, body });
    state.editing = null;
    notify("Memory saved");
    await refreshAll();
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) await changedElsewhere(memory);
    else if (error instanceof ApiError && error.status === 404) deletedElsewhere(memory, text, topicsText);
    else reportStale(error, "Could not save the memory");
  }
}

// The memory was deleted elsewhere (another tab, an agent) while its row was being edited:
// what was typed moves to the New memory form, for the same user, to be saved as a new
// memory or dropped, and the table catches up.
export function deletedElsewhere(memory, text, topicsText) {
  state.editing = null;
  state.draft = null;
  openCreate();
  $("new-text").value = text;
  $("new-topics").value = topicsText;
  $("new-user").value = memory.user_id;
  updateCounter();
  showError("This memory was deleted elsewhere after you began editing it. What you typed is "
    + "in the New memory form: save it to keep it, or cancel.");
  refreshAll();
}

// The memory was saved elsewhere (another tab, an agent) after its row was opened: the row
// now holds the memory as it is, the edit stays open with what was typed, and saving again
// replaces the other change knowingly.
export async function changedElsewhere(memory) {
  let current;
  try {
    const [path, query] = aboutId("memory", memory.memory_id, { user_id: memory.user_id });
    current = await api(path, { query });
  } catch (error) {
    reportStale(error, "Could not save the memory");
    return;
  }
  state.memories = state.memories.map((m) => (m.memory_id === current.memory_id ? current : m));
  renderMemories();
  showError("This memory was changed elsewhere after you began editing it; it now reads "
    + `“${clip(current.memory, 200)}”. Your edit is kept: save again to replace it, or cancel.`);
}

// A memory that is gone (deleted elsewhere) is reported, and the table catches up.
export function reportStale(error, context) {
  report(error, context);
  if (error instanceof ApiError && error.status === 404) {
    state.editing = null;
    refreshAll();
  }
}

export function confirmDialog({ title, text, quote, action }) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-quote").textContent = quote || "";
  $("confirm-quote").hidden = !quote;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}

export async function deleteMemory(memory) {
  const confirmed = await confirmDialog({
    title: "Delete this memory?",
    text: `The agent will no longer know this about ${memory.user_id}. Its history is kept.`,
    quote: memory.memory,
    action: "Delete",
  });
  if (!confirmed) return;
  try {
    const [path, query] = aboutId("memory", memory.memory_id, { user_id: memory.user_id });
    await api(path, { method: "DELETE", query });
    state.selected.delete(memory.memory_id);
    notify("Memory deleted");
    await refreshAll();
  } catch (error) {
    reportStale(error, "Could not delete the memory");
  }
}

// ---------------------------------------------------------------------------------------
// Selection and bulk delete

export function toggleSelected(memory, on) {
  if (on) state.selected.set(memory.memory_id, memory.user_id);
  else state.selected.delete(memory.memory_id);
  renderSelection();
}

export function selectPage(on) {
  for (const memory of state.memories) {
    if (on) state.selected.set(memory.memory_id, memory.user_id);
    else state.selected.delete(memory.memory_id);
  }
  renderSelection();
}

export function selectionByUser() {
  const groups = new Map();
  for (const [memoryId, userId] of state.selected) {
    if (!groups.has(userId)) groups.set(userId, []);
    groups.get(userId).push(memoryId);
  }
  return groups;
}

export function renderSelection() {
  const count = state.selected.size;
  const users = selectionByUser().size;
  $("bulk-bar").hidden = count === 0;
  $("bulk-count").textContent = `${plural(count, "memory", "memories")} selected`
    + (users > 1 ? ` (${users} users)` : "");
  for (const row of $("memory-rows").rows) {
    const on = state.selected.has(row.dataset.memoryId);
    row.classList.toggle("is-selected", on);
    const box = row.querySelector("input[type=checkbox]");
    if (box) box.checked = on;
  }
  const onPage = state.memories.filter((m) => state.selected.has(m.memory_id)).length;
  const all = $("select-all");
  all.checked = onPage > 0 && onPage === state.memories.length;
  all.indeterminate = onPage > 0 && onPage < state.memories.length;
  all.disabled = state.memories.length === 0;
}

export async function bulkDelete() {
  const groups = selectionByUser();
  const count = state.selected.size;
  const owners = [...groups.keys()];
  const confirmed = await confirmDialog({
    title: `Delete ${plural(count, "memory", "memories")}?`,
    text: owners.length > 1
      ? `They belong to ${owners.length} users: ${owners.join(", ")}. Their history is kept.`
      : `They belong to ${owners[0]}. Their history is kept.`,
    action: `Delete ${count.toLocaleString()}`,
  });
  if (!confirmed) return;
  let deleted = 0;
  try {
    for (const [userId, ids] of groups) {
      for (let i = 0; i < ids.length; i += MAX_BULK) {
        const chunk = ids.slice(i, i + MAX_BULK);
        const body = { memory_ids: chunk, user_id: userId };
        const result = await api("/memories", { method: "DELETE", body });
        deleted += result.deleted;
        chunk.forEach((id) => state.selected.delete(id));
      }
    }
    notify(`Deleted ${plural(deleted, "memory", "memories")}`);
  } catch (error) {
    report(error, "Could not delete every selected memory");
  }
  await refreshAll();
  leaveBulkBar();
}

// The selection bar hides once nothing is selected: the keyboard moves on from its
// buttons to the table's "select all" box (or the panel, when no memory is left).
export function leaveBulkBar() {
  const at = document.activeElement;
  if (!$("bulk-bar").hidden || (!$("bulk-bar").contains(at) && at !== document.body)) return;
  ($("select-all").disabled ? $("memories-view") : $("select-all")).focus();
}
