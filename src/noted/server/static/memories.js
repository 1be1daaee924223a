// The toolbar (search, topic, sort, page size) and the memories table.

import {
  $, api, charCount, clip, h, icon, LONG_MEMORY_CHARS, plural, report, SEARCH_DELAY_MS, state,
  timeEl, topicCell,
} from "./core.js";
import {
  cancelEdit, deleteMemory, renderSelection, saveEdit, startEdit, toggleSelected,
} from "./edit.js";
import { openHistory } from "./history.js";
import { loadUsers } from "./users.js";

let searchTimer = 0;
let topicsRequest = 0;
let memoriesRequest = 0;

// ---------------------------------------------------------------------------------------
// Toolbar: search, search type, topic, sort, page size

export async function loadTopics() {
  const request = ++topicsRequest;
  try {
    const topics = await api("/memory_topics", { query: { user_id: state.user } });
    if (request === topicsRequest) renderTopics(topics);
  } catch (error) {
    if (request === topicsRequest) report(error, "Could not load the topics");
  }
}

export function renderTopics(topics) {
  const shown = state.topic && !topics.includes(state.topic) ? [state.topic, ...topics] : topics;
  $("topic-filter").replaceChildren(
    h("option", { value: "", text: "All topics" }),
    ...shown.map((t) => h("option", { value: t, text: t })),
  );
  $("topic-filter").value = state.topic;
}

export function renderControls() {
  const search = $("search");
  const canSearch = state.user !== null;
  search.disabled = !canSearch;
  search.placeholder = canSearch ? `Search ${state.user}'s memories` : "Pick a user to search";
  $("search-hint").textContent = canSearch ? "" : "Search looks within one user: pick a user first.";
  $("search-hint").hidden = canSearch;
  $("search-type-field").hidden = !(state.health && state.health.semantic_search);
  $("sort").disabled = Boolean(state.search);
  $("sort").title = state.search ? "Search results come best match first" : "";
  $("new-user-field").hidden = Boolean(state.tokenUser);
}

export function onSearchInput() {
  window.clearTimeout(searchTimer);
  searchTimer = window.setTimeout(applySearch, SEARCH_DELAY_MS);
}

export function applySearch() {
  window.clearTimeout(searchTimer);
  const text = $("search").value.trim();
  if (text === state.search) return;
  state.search = text;
  state.page = 1;
  renderControls();
  loadMemories();
}

export function onFilterChange() {
  const [sortBy, sortOrder] = $("sort").value.split(":");
  Object.assign(state, {
    topic: $("topic-filter").value,
    searchType: $("search-type").value,
    sortBy,
    sortOrder,
    limit: Number($("page-size").value),
    page: 1,
  });
  loadMemories();
}

// ---------------------------------------------------------------------------------------
// The memories table

export function memoryQuery() {
  const query = { page: state.page, limit: state.limit, user_id: state.user, topics: state.topic };
  if (state.search) {
    query.search_content = state.search;
    if (state.health && state.health.semantic_search) query.search_type = state.searchType;
  } else {
    query.sort_by = state.sortBy;
    query.sort_order = state.sortOrder;
  }
  return query;
}

// An empty page past the last one (its memories were deleted meanwhile) moves to the last
// page, once: a page the server still counts is drawn empty rather than asked for again.
export async function loadMemories(moved = false) {
  const request = ++memoriesRequest;
  $("memories").setAttribute("aria-busy", "true");
  try {
    const result = await api("/memories", { query: memoryQuery() });
    if (request !== memoriesRequest) return;
    const last = Math.max(1, result.meta.total_pages);
    if (result.data.length === 0 && state.page > last && !moved) {
      state.page = last;
      await loadMemories(true);
      return;
    }
    state.memories = result.data;
    state.meta = result.meta;
    renderMemories();
  } catch (error) {
    if (request === memoriesRequest) report(error, "Could not load the memories");
  } finally {
    if (request === memoriesRequest) $("memories").removeAttribute("aria-busy");
  }
}

export function renderMemories() {
  const place = tableFocus();
  const rows = state.memories.map((m) => (m.memory_id === state.editing ? editRow(m) : memoryRow(m)));
  $("memory-rows").replaceChildren(...rows);
  renderEmpty();
  renderPager();
  renderSelection();
  if (place) restoreTableFocus(place);
}

// Where the keyboard is in the table (which memory's row, which control, the caret in a
// field), so that drawing the table again does not drop it on the page's body.
export function tableFocus() {
  const el = document.activeElement;
  const row = el instanceof HTMLElement ? el.closest("#memory-rows tr") : null;
  if (!row) return null;
  const typing = el instanceof HTMLTextAreaElement || (el instanceof HTMLInputElement && el.type === "text");
  return {
    memoryId: row.dataset.memoryId,
    index: row.sectionRowIndex,
    key: el.dataset.action || el.dataset.testid || "",
    caret: typing ? [el.selectionStart, el.selectionEnd] : null,
  };
}

// The same control of the same memory; its Edit button when its edit has closed (saved or
// cancelled); the same control of the row now in its place when it is gone (deleted); the
// memories' panel when no row is left.
export function restoreTableFocus(place) {
  const rows = Array.from($("memory-rows").rows);
  const same = rows.find((r) => r.dataset.memoryId === place.memoryId);
  const row = same || rows[Math.min(place.index, rows.length - 1)];
  if (!row) {
    $("memories-view").focus();
    return;
  }
  const control = place.key
    && row.querySelector(`[data-action="${place.key}"], [data-testid="${place.key}"]`);
  const target = control || row.querySelector("[data-action=edit]");
  if (!target) return;
  target.focus();
  if (control && same && place.caret && target.setSelectionRange) target.setSelectionRange(...place.caret);
}

export function rowAttrs(memory, extra) {
  return {
    class: extra,
    "data-testid": "memory-row",
    dataset: { memoryId: memory.memory_id, userId: memory.user_id },
  };
}

export function memoryMeta(memory) {
  const parts = [];
  if (memory.agent_id) parts.push(`agent ${memory.agent_id}`);
  if (memory.team_id) parts.push(`team ${memory.team_id}`);
  if (memory.session_id) parts.push("learned in a session");
  return parts.length ? h("p", { class: "memory-meta", text: parts.join(" · ") }) : null;
}

// `about`: what the button acts on, in its accessible name ("Edit memory: “Likes tea”"), so
// that a screen reader's list of buttons tells one row's from another's
export function iconButton(name, action, label, onClick, about) {
  return h("button", {
    type: "button",
    class: `icon-btn icon-btn-${name}`,
    "aria-label": about === undefined ? label : `${label}: “${clip(about, 60)}”`,
    title: label,
    dataset: { action },
    onclick: onClick,
  }, icon(name));
}

export function userTag(userId, testId) {
  return h("span", { class: "user-tag", "data-testid": testId, dir: "auto", title: userId, text: userId });
}

export function memoryRow(memory) {
  const id = memory.memory_id;
  const selected = state.selected.has(id);
  return h("tr", rowAttrs(memory, selected ? "is-selected" : undefined),
    h("td", { class: "col-select" }, h("input", {
      type: "checkbox",
      checked: selected,
      "aria-label": `Select “${clip(memory.memory, 60)}”`,
      dataset: { action: "select" },
      onchange: (event) => toggleSelected(memory, event.target.checked),
    })),
    h("td", { class: "col-text" }, memoryText(memory), memoryMeta(memory)),
    h("td", { class: "col-topics" }, topicCell(memory)),
    h("td", { class: "col-user" }, userTag(memory.user_id, "memory-user")),
    h("td", { class: "col-updated" }, timeEl(memory.updated_at)),
    h("td", { class: "col-actions" }, h("div", { class: "row-actions" },
      iconButton("edit", "edit", "Edit memory", () => startEdit(id), memory.memory),
      iconButton("history", "history", "Show history", () => openHistory(memory), memory.memory),
      iconButton("trash", "delete", "Delete memory", () => deleteMemory(memory), memory.memory))),
  );
}

// A long memory shows its first lines, with a button that shows it whole (and folds it
// again): one memory of thousands of characters does not make a row many screens tall.
export function memoryText(memory) {
  const id = memory.memory_id;
  const long = memory.memory.length > LONG_MEMORY_CHARS || memory.memory.split("\n").length > 6;
  const folded = long && !state.unfolded.has(id);
  const text = h("p", {
    class: folded ? "memory-text is-folded" : "memory-text",
    "data-testid": "memory-text",
    dir: "auto",
    text: memory.memory,
  });
  if (!long) return text;
  const count = charCount(memory.memory).toLocaleString();
  const toggle = h("button", {
    type: "button",
    class: "btn btn-ghost btn-small fold-toggle",
    "data-testid": "fold-toggle",
    "aria-expanded": String(!folded),
    text: folded ? `Show all ${count} characters` : "Show less",
    onclick: () => {
      if (folded) state.unfolded.add(id);
      else state.unfolded.delete(id);
      const next = memoryText(memory);
      text.replaceWith(next[0]);
      toggle.replaceWith(next[1]);
      next[1].focus();
    },
  });
  return [text, toggle];
}

export function textButton(label, action, variant, onClick) {
  return h("button", {
    type: "button",
    class: `btn ${variant} btn-small`,
    dataset: { action },
    text: label,
    onclick: onClick,
  });
}

export function editRow(memory) {
  const text = h("textarea", {
    class: "edit-text",
    dir: "auto",
    "data-testid": "edit-text",
    rows: 3,
    "aria-label": "Memory text",
  });
  // what was typed survives the table being drawn again (a refresh after another change)
  const draft = state.draft || { text: memory.memory, topics: memory.topics.join(", ") };
  state.draft = draft;
  text.value = draft.text;
  const topics = h("input", {
    type: "text",
    class: "edit-topics",
    dir: "auto",
    "data-testid": "edit-topics",
    "aria-label": "Topics, separated by commas",
    placeholder: "topics",
  });
  topics.value = draft.topics;
  text.addEventListener("input", () => { draft.text = text.value; });
  topics.addEventListener("input", () => { draft.topics = topics.value; });
  const save = () => saveEdit(memory, text.value, topics.value);
  const onKey = (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      cancelEdit();
    } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey || event.target === topics)) {
      event.preventDefault();
      save();
    }
  };
  text.addEventListener("keydown", onKey);
  topics.addEventListener("keydown", onKey);
  return h("tr", rowAttrs(memory, "is-editing"),
    h("td", { class: "col-select" }),
    h("td", { class: "col-text" }, text, h("p", { class: "hint", text: "Ctrl+Enter saves · Esc cancels" })),
    h("td", { class: "col-topics" }, topics),
    h("td", { class: "col-user" }, userTag(memory.user_id)),
    h("td", { class: "col-updated" }, timeEl(memory.updated_at)),
    h("td", { class: "col-actions" }, h("div", { class: "edit-actions" },
      textButton("Save", "save", "btn-primary", save),
      textButton("Cancel", "cancel", "btn-ghost", cancelEdit))),
  );
}

export function renderEmpty() {
  const none = state.memories.length === 0;
  $("empty").hidden = !none;
  $("memories").classList.toggle("is-empty", none);
  if (!none) return;
  let title = "No memories yet.";
  if (state.search) title = `Nothing matches “${state.search}”.`;
  else if (state.topic) title = `No memories with the topic “${state.topic}”.`;
  else if (state.user !== null) title = `${state.user} has no memories yet.`;
  const hint = state.search || state.topic ? "Try other words, or clear the filters."
    : "Add one with New memory, or let an agent learn from its conversations.";
  $("empty").replaceChildren(
    h("p", { class: "empty-title", text: title }),
    h("p", { class: "muted", text: hint }),
  );
}

export function renderPager() {
  const meta = state.meta;
  const pages = Math.max(1, meta.total_pages);
  const noun = state.search ? ["match", "matches"] : ["memory", "memories"];
  $("page-info").textContent = meta.total_count === 0 ? ""
    : `Page ${meta.page} of ${pages} · ${plural(meta.total_count, ...noun)}`;
  $("prev-page").disabled = state.page <= 1;
  $("next-page").disabled = state.page >= meta.total_pages;
}

// Previous and Next step from the page on screen, within the pages the server counts: a
// second click while the first one's page is on its way asks for nothing more.
export function goToPage(page) {
  const last = state.meta ? Math.max(1, state.meta.total_pages) : 1;
  const target = Math.min(Math.max(1, page), last);
  if (target === state.page && $("memories").hasAttribute("aria-busy")) return;
  state.page = target;
  state.editing = null;
  loadMemories();
}

export function shownPage() {
  return state.meta ? state.meta.page : state.page;
}

export async function refreshAll() {
  await Promise.all([loadMemories(), loadUsers("again"), loadTopics()]);
}
