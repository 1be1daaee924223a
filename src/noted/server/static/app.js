// The Memories page: browse, search, edit and delete what noted remembers about users,
// read a memory's history and a session's transcript. Plain browser JavaScript, no build.
// Every piece of data is put on the page as text (textContent / DOM nodes), never as HTML.
"use strict";

const STORAGE_KEY = "noted.credential";
const SEARCH_DELAY_MS = 250;
const USERS_PAGE_SIZE = 50;
const SESSIONS_PAGE_SIZE = 20;
const MAX_BULK = 1000;

const state = {
  health: null,
  credential: null,
  tokenUser: null, // the `sub` of a user token (for display; the server enforces it)
  user: null, // the selected user; null is every user
  topic: "",
  search: "",
  searchType: "hybrid",
  sortBy: "updated_at",
  sortOrder: "desc",
  page: 1,
  limit: 20,
  memories: [],
  meta: null,
  selected: new Map(), // memory_id -> user_id
  unfolded: new Set(), // memory_ids of long memories shown whole
  editing: null, // memory_id of the row being edited
  draft: null, // its text and topics as typed so far
  users: [],
  userFilter: "", // only the users whose id holds this text ("Find a user")
  usersPage: 1,
  usersMore: false,
  sessions: [],
  sessionsPage: 1,
  view: "memories",
};

// Each list counts its requests: an answer to one that a later request replaced (another
// user picked meanwhile, a slow store) is dropped, not drawn over the later one's.
let memoriesRequest = 0;
let usersRequest = 0;
let topicsRequest = 0;
let sessionsRequest = 0;
let findUserTimer = 0;
let usersMoreLoading = false; // a "Show more users" answer is awaited
let sessionsMoreLoading = false; // a "Show older sessions" answer is awaited
let searchTimer = 0;
let resumed = null; // the view a refused credential interrupted (see keepView)
let noticeTimer = 0;

// ---------------------------------------------------------------------------------------
// DOM helpers

const $ = (id) => document.getElementById(id);
const PROPERTIES = new Set(["checked", "disabled", "value", "indeterminate"]);

function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const ICONS = {
  edit: ["M4 20h4L19 9l-4-4L4 16z", "M13.5 6.5l4 4"],
  history: ["M3.5 12a8.5 8.5 0 1 0 2.5-6", "M3.5 4v4.5H8", "M12 7.5V12l3 2"],
  trash: ["M4 7h16", "M9 7V4.5h6V7", "M6.5 7l1 12.5h9l1-12.5", "M10 11v5.5", "M14 11v5.5"],
};

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "icon");
  for (const d of ICONS[name]) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

// ---------------------------------------------------------------------------------------
// Formatting

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const TIME_STEPS = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"]];

function ago(date) {
  let value = (date.getTime() - Date.now()) / 1000;
  if (Math.abs(value) < 45) return "just now";
  for (const [size, unit] of TIME_STEPS) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return dateOnly.format(date);
}

function timeEl(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return h("span", { class: "muted", text: "—" });
  return h("time", { datetime: iso, title: dateTime.format(date), text: ago(date) });
}

function plural(count, one, many) {
  return `${count.toLocaleString()} ${count === 1 ? one : many}`;
}

const LONG_MEMORY_CHARS = 600;

function clip(text, length) {
  const chars = Array.from(text || "");
  return chars.length > length ? `${chars.slice(0, length - 1).join("")}…` : chars.join("");
}

const MAX_MEMORY_CHARS = 5000;

// Lengths as the server counts them: in characters, not UTF-16 units (an emoji is one).
function charCount(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function parseTopics(text) {
  const topics = text.split(",").map((t) => t.trim()).filter(Boolean);
  return [...new Set(topics)];
}

function sameList(a, b) {
  return a.length === b.length && a.every((item, i) => item === b[i]);
}

function hue(text) {
  let hash = 0;
  for (const ch of text) hash = (hash * 31 + ch.codePointAt(0)) % 360;
  return hash;
}

function avatar(userId) {
  const el = h("span", { class: "avatar", "aria-hidden": "true" });
  if (userId === null) {
    el.classList.add("avatar-all");
    el.textContent = "∗";
  } else {
    el.textContent = Array.from(userId)[0].toUpperCase();
    el.style.setProperty("--hue", String(hue(userId)));
  }
  return el;
}

// A memory whose stored topics are damaged (a hand-edited database) comes with none and
// says what is wrong: flagged, so it can be given topics (an edit) or deleted.
function topicCell(memory) {
  if (!memory.damaged) return topicList(memory.topics);
  return h("span", {
    class: "damaged-flag",
    "data-testid": "damaged",
    title: `Its stored topics are damaged (${memory.damaged}). Edit it to give it topics, or delete it.`,
    text: "⚠ Damaged topics",
  });
}

function topicList(topics) {
  if (!topics || topics.length === 0) return h("span", { class: "muted small", text: "—" });
  return h("ul", { class: "chips", "aria-label": "Topics" },
    topics.map((t) => h("li", { class: "chip", "data-testid": "topic", dir: "auto", title: t, text: t })));
}

// ---------------------------------------------------------------------------------------
// Talking to the server

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function buildUrl(path, query = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: clip(text, 300) };
  }
}

async function api(path, { method = "GET", query, body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.credential) headers.Authorization = `Bearer ${state.credential}`;
  // a request the browser refuses to make (a header it cannot carry) is this page's
  // failure, not the server's: only a request that was sent can find no server
  const request = new Request(buildUrl(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let response;
  try {
    response = await fetch(request);
  } catch {
    throw new ApiError(0, "Cannot reach the noted server. Check that it is running and try again.");
  }
  const data = response.status === 204 ? null : await readBody(response);
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail
      : `The server answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, detail);
  }
  return data;
}

const segment = (id) => encodeURIComponent(id);

// ---------------------------------------------------------------------------------------
// Messages

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function report(error, context = "") {
  if (error instanceof ApiError && error.status === 401) {
    keepView();
    showSignIn(error.message);
    return;
  }
  const message = error instanceof ApiError ? error.message
    : `something went wrong on this page (${error && error.message ? error.message : error})`;
  showError(context ? `${context}: ${message}` : message);
}

function notify(message) {
  clearError();
  const el = $("notice");
  el.textContent = message;
  el.classList.add("show");
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => el.classList.remove("show"), 3500);
}

// ---------------------------------------------------------------------------------------
// Sign-in: an API key or a user token, kept in sessionStorage for this tab

function tokenSubject(credential) {
  const parts = credential.split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return typeof payload.sub === "string" && payload.sub ? payload.sub : null;
  } catch {
    return null;
  }
}

function setCredential(value) {
  state.credential = value || null;
  state.tokenUser = state.credential ? tokenSubject(state.credential) : null;
  try {
    if (state.credential) sessionStorage.setItem(STORAGE_KEY, state.credential);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage may be unavailable (private modes): the credential lives in memory only
  }
}

function storedCredential() {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

function signInError(message) {
  $("sign-in-error").textContent = message || "";
  $("sign-in-error").hidden = !message;
}

function showSignIn(message) {
  setCredential(null);
  closeDialogs();
  $("app").hidden = true;
  $("sign-in").hidden = false;
  clearError();
  renderAccount();
  signInError(message);
  $("credential").focus();
}

// Invisible characters a copy can carry along (zero-width spaces and joiners, the word
// joiner, a byte order mark): no key or token holds them.
const INVISIBLE = /[\u200B-\u200D\u2060\uFEFF]/g;

// A pasted key or token less what a copy added around or inside it, or what is wrong with
// it: a request header carries characters up to U+00FF only, and no line breaks.
function checkCredential(text) {
  const value = text.replace(INVISIBLE, "").trim();
  if (!value) return { problem: "Paste an API key or a user token." };
  const bad = Array.from(value).find((ch) => ch.codePointAt(0) > 0xff || "\0\r\n".includes(ch));
  if (bad === undefined) return { value };
  const code = `U+${bad.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
  const shown = "\0\r\n".includes(bad) ? code : `${code} (${bad})`;
  return {
    problem: `This is not a key or token as it was issued: it holds ${shown}, as text copied `
      + "from a document or a chat can. Copy it again as plain text.",
  };
}

async function onSignIn(event) {
  event.preventDefault();
  const { value, problem } = checkCredential($("credential").value);
  if (problem) {
    signInError(problem);
    return;
  }
  setCredential(value);
  $("sign-in-submit").disabled = true;
  try {
    await api("/user_memory_stats", { query: { limit: 1 } });
  } catch (error) {
    setCredential(null);
    signInError(error.message);
    return;
  } finally {
    $("sign-in-submit").disabled = false;
  }
  $("credential").value = "";
  signInError("");
  await enterApp();
}

function signOut() {
  resumed = null;
  setCredential(null);
  showSignIn("");
  notify("Signed out");
}

function renderAccount() {
  const health = state.health;
  $("server-info").textContent = health
    ? `noted ${health.version} · ${health.auth === "open" ? "open access" : "API key"}`
    : "noted";
  const who = $("signed-in-as");
  who.hidden = !state.credential;
  who.textContent = state.tokenUser ? `Signed in as ${state.tokenUser}` : "Signed in with the API key";
  $("sign-out").hidden = !state.credential;
}

// ---------------------------------------------------------------------------------------
// Users: per-user stats, and the picker

// The users' stats: "first" their first page, "more" the next one, "again" as many pages as
// are listed (after a write: a user listed from a later page stays listed, with its count).
async function loadUsers(pages = "first") {
  const more = pages === "more";
  if (more && usersMoreLoading) return; // a second click asks for the same page
  const from = more ? state.usersPage + 1 : 1;
  const to = more ? from : pages === "again" ? state.usersPage : 1;
  const request = ++usersRequest;
  if (more) usersMoreLoading = true;
  try {
    const asked = [];
    for (let page = from; page <= to; page += 1) {
      const query = { page, limit: USERS_PAGE_SIZE, user_id_contains: state.userFilter || null };
      asked.push(api("/user_memory_stats", { query }));
    }
    const results = await Promise.all(asked);
    if (request !== usersRequest) return;
    const meta = results[results.length - 1].meta;
    state.users = results.reduce((users, r) => appendNew(users, r.data, "user_id"),
      more ? state.users : []);
    state.usersPage = to;
    state.usersMore = to < meta.total_pages;
    state.usersTotal = meta.total_count;
    renderUsers();
  } catch (error) {
    if (request === usersRequest) report(error, "Could not load the users");
  } finally {
    if (more) usersMoreLoading = false;
  }
}

// A next page appended to a list, less what the list already holds (a write can move an
// item from one page to the next between the two answers).
function appendNew(list, next, key) {
  const known = new Set(list.map((item) => item[key]));
  return list.concat(next.filter((item) => !known.has(item[key])));
}

function userItem(userId, stats) {
  const selected = state.user === userId;
  let count = stats ? plural(stats.memory_count, "memory", "memories") : "No memories";
  // Not all users loaded, or only those found: their sum is not everyone's.
  if (userId === null && !stats && (state.users.length || state.userFilter)) count = "";
  const meta = h("span", { class: "user-meta" },
    h("span", { "data-testid": "user-count", text: count }),
    stats && stats.last_updated ? [" · ", timeEl(stats.last_updated)] : null);
  const body = [avatar(userId), h("span", { class: "user-text" },
    h("span", { class: "user-name", dir: "auto", title: userId, text: userId === null ? "All users" : userId }),
    meta)];
  const attrs = {
    class: "user-item",
    "data-testid": userId === null ? "user-all" : "user-item",
    dataset: userId === null ? {} : { userId },
  };
  if (state.tokenUser) return h("li", {}, h("div", attrs, body));
  return h("li", {}, h("button", {
    ...attrs,
    type: "button",
    "aria-pressed": String(selected),
    onclick: () => selectUser(userId),
  }, body));
}

function allUsersStats() {
  if (state.usersMore || state.users.length === 0 || state.userFilter) return null;
  const count = state.users.reduce((sum, u) => sum + u.memory_count, 0);
  return { memory_count: count, last_updated: state.users[0].last_updated };
}

function renderUsers() {
  const items = [];
  if (!state.tokenUser) items.push(userItem(null, allUsersStats()));
  for (const stats of state.users) items.push(userItem(stats.user_id, stats));
  const known = state.users.some((u) => u.user_id === state.user);
  if (state.user !== null && !known) items.push(userItem(state.user, null));
  if (state.userFilter && state.users.length === 0) {
    items.push(h("li", { class: "user-none muted small", "data-testid": "user-none",
      dir: "auto", text: `No user id holds “${state.userFilter}”` }));
  }
  $("user-list").replaceChildren(...items);
  $("more-users").hidden = !state.usersMore;
  $("find-user-field").hidden = Boolean(state.tokenUser);
  $("users-title").textContent = state.tokenUser ? "User" : "Users";
  const total = plural(state.usersTotal || 0, "user", "users");
  $("users-total").textContent = state.tokenUser ? "" : state.userFilter ? `${total} found` : total;
  $("known-users").replaceChildren(...state.users.map((u) => h("option", { value: u.user_id })));
}

function selectUser(userId) {
  if (state.tokenUser || state.user === userId) return;
  if ($("new-user").value.trim() === (state.user || "")) $("new-user").value = userId || "";
  state.user = userId;
  state.page = 1;
  state.topic = "";
  state.editing = null;
  if (userId === null) {
    state.search = "";
    $("search").value = "";
  }
  renderUsers();
  renderControls();
  loadTopics();
  loadMemories();
  if (state.view === "sessions") loadSessions();
}

// ---------------------------------------------------------------------------------------
// Toolbar: search, search type, topic, sort, page size

async function loadTopics() {
  const request = ++topicsRequest;
  try {
    const topics = await api("/memory_topics", { query: { user_id: state.user } });
    if (request === topicsRequest) renderTopics(topics);
  } catch (error) {
    if (request === topicsRequest) report(error, "Could not load the topics");
  }
}

function renderTopics(topics) {
  const shown = state.topic && !topics.includes(state.topic) ? [state.topic, ...topics] : topics;
  $("topic-filter").replaceChildren(
    h("option", { value: "", text: "All topics" }),
    ...shown.map((t) => h("option", { value: t, text: t })),
  );
  $("topic-filter").value = state.topic;
}

function renderControls() {
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

function onFindUserInput() {
  window.clearTimeout(findUserTimer);
  findUserTimer = window.setTimeout(() => {
    const text = $("find-user").value.trim();
    if (text === state.userFilter) return;
    state.userFilter = text;
    loadUsers("first");
  }, SEARCH_DELAY_MS);
}

function onSearchInput() {
  window.clearTimeout(searchTimer);
  searchTimer = window.setTimeout(applySearch, SEARCH_DELAY_MS);
}

function applySearch() {
  window.clearTimeout(searchTimer);
  const text = $("search").value.trim();
  if (text === state.search) return;
  state.search = text;
  state.page = 1;
  renderControls();
  loadMemories();
}

function onFilterChange() {
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

function memoryQuery() {
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
async function loadMemories(moved = false) {
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

function renderMemories() {
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
function tableFocus() {
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
function restoreTableFocus(place) {
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

function rowAttrs(memory, extra) {
  return {
    class: extra,
    "data-testid": "memory-row",
    dataset: { memoryId: memory.memory_id, userId: memory.user_id },
  };
}

function memoryMeta(memory) {
  const parts = [];
  if (memory.agent_id) parts.push(`agent ${memory.agent_id}`);
  if (memory.team_id) parts.push(`team ${memory.team_id}`);
  if (memory.session_id) parts.push("learned in a session");
  return parts.length ? h("p", { class: "memory-meta", text: parts.join(" · ") }) : null;
}

// `about`: what the button acts on, in its accessible name ("Edit memory: “Likes tea”"), so
// that a screen reader's list of buttons tells one row's from another's
function iconButton(name, action, label, onClick, about) {
  return h("button", {
    type: "button",
    class: `icon-btn icon-btn-${name}`,
    "aria-label": about === undefined ? label : `${label}: “${clip(about, 60)}”`,
    title: label,
    dataset: { action },
    onclick: onClick,
  }, icon(name));
}

function userTag(userId, testId) {
  return h("span", { class: "user-tag", "data-testid": testId, dir: "auto", title: userId, text: userId });
}

function memoryRow(memory) {
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
function memoryText(memory) {
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

function textButton(label, action, variant, onClick) {
  return h("button", {
    type: "button",
    class: `btn ${variant} btn-small`,
    dataset: { action },
    text: label,
    onclick: onClick,
  });
}

function editRow(memory) {
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

function renderEmpty() {
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

function renderPager() {
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
function goToPage(page) {
  const last = state.meta ? Math.max(1, state.meta.total_pages) : 1;
  const target = Math.min(Math.max(1, page), last);
  if (target === state.page && $("memories").hasAttribute("aria-busy")) return;
  state.page = target;
  state.editing = null;
  loadMemories();
}

function shownPage() {
  return state.meta ? state.meta.page : state.page;
}

async function refreshAll() {
  await Promise.all([loadMemories(), loadUsers("again"), loadTopics()]);
}

// ---------------------------------------------------------------------------------------
// Create, edit, delete

function openCreate() {
  $("create-form").hidden = false;
  $("new-memory").setAttribute("aria-expanded", "true");
  $("new-user").value = state.user === null ? "" : state.user;
  createError("");
  updateCounter();
  $("new-text").focus();
}

function closeCreate() {
  $("create-form").reset();
  $("create-form").hidden = true;
  $("new-memory").setAttribute("aria-expanded", "false");
  $("new-memory").focus();
}

// Keys in the New memory form, as in a row's edit: Escape cancels, Ctrl+Enter in the text
// saves (Enter in a one-line field saves too, as in any form).
function onCreateKey(event) {
  if (event.key === "Escape") {
    event.preventDefault();
    closeCreate();
  } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target === $("new-text")) {
    event.preventDefault();
    $("create-form").requestSubmit();
  }
}

function createError(message) {
  $("create-error").textContent = message;
  $("create-error").hidden = !message;
}

function updateCounter() {
  const length = charCount($("new-text").value);
  $("new-text-count").textContent = `${length.toLocaleString()} / 5,000`;
  $("new-text-count").classList.toggle("is-over", length > MAX_MEMORY_CHARS);
  $("new-text-count").hidden = length === 0;
}

function tooLong(text) {
  const count = charCount(text);
  return count > MAX_MEMORY_CHARS
    ? `A memory holds at most 5,000 characters; this one has ${count.toLocaleString()}.`
    : "";
}

async function onCreate(event) {
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

function startEdit(memoryId) {
  state.editing = memoryId;
  state.draft = null;
  renderMemories();
  const area = document.querySelector("#memory-rows .edit-text");
  if (area) area.focus();
}

function cancelEdit() {
  state.editing = null;
  renderMemories();
}

async function saveEdit(memory, text, topicsText) {
  const body = {};
  const trimmed = text.trim();
  if (!trimmed) {
    showError("A memory needs some text: delete it instead if it should go.");
    return;
  }
  // the text as stored passes (one stored through the library with a higher limit)
  const refused = trimmed === memory.memory ? "" : tooLong(trimmed);
  if (refused) {
    showError(refused);
    return;
  }
  const topics = parseTopics(topicsText);
  if (trimmed !== memory.memory) body.memory = trimmed;
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
    await api(`/memories/${segment(memory.memory_id)}`, {
      method: "PATCH",
      query: { user_id: memory.user_id },
      body,
    });
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
function deletedElsewhere(memory, text, topicsText) {
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
async function changedElsewhere(memory) {
  let current;
  try {
    current = await api(`/memories/${segment(memory.memory_id)}`, {
      query: { user_id: memory.user_id },
    });
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
function reportStale(error, context) {
  report(error, context);
  if (error instanceof ApiError && error.status === 404) {
    state.editing = null;
    refreshAll();
  }
}

function confirmDialog({ title, text, quote, action }) {
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

async function deleteMemory(memory) {
  const confirmed = await confirmDialog({
    title: "Delete this memory?",
    text: `The agent will no longer know this about ${memory.user_id}. Its history is kept.`,
    quote: memory.memory,
    action: "Delete",
  });
  if (!confirmed) return;
  try {
    await api(`/memories/${segment(memory.memory_id)}`, {
      method: "DELETE",
      query: { user_id: memory.user_id },
    });
    state.selected.delete(memory.memory_id);
    notify("Memory deleted");
    await refreshAll();
  } catch (error) {
    reportStale(error, "Could not delete the memory");
  }
}

// ---------------------------------------------------------------------------------------
// Selection and bulk delete

function toggleSelected(memory, on) {
  if (on) state.selected.set(memory.memory_id, memory.user_id);
  else state.selected.delete(memory.memory_id);
  renderSelection();
}

function selectPage(on) {
  for (const memory of state.memories) {
    if (on) state.selected.set(memory.memory_id, memory.user_id);
    else state.selected.delete(memory.memory_id);
  }
  renderSelection();
}

function selectionByUser() {
  const groups = new Map();
  for (const [memoryId, userId] of state.selected) {
    if (!groups.has(userId)) groups.set(userId, []);
    groups.get(userId).push(memoryId);
  }
  return groups;
}

function renderSelection() {
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

async function bulkDelete() {
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
function leaveBulkBar() {
  const at = document.activeElement;
  if (!$("bulk-bar").hidden || (!$("bulk-bar").contains(at) && at !== document.body)) return;
  ($("select-all").disabled ? $("memories-view") : $("select-all")).focus();
}

// ---------------------------------------------------------------------------------------
// History of one memory

const EVENT_LABELS = { add: "Added", update: "Updated", delete: "Deleted" };

function topicChange(before, after) {
  if (before && after && sameList(before, after)) return null;
  return h("div", { class: "topic-change" },
    h("span", { class: "muted small", text: "Topics " }),
    before ? h("del", {}, topicList(before)) : null,
    before && after ? h("span", { class: "arrow", "aria-hidden": "true", text: "→" }) : null,
    after ? h("ins", {}, topicList(after)) : null);
}

function historyEvent(event) {
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

async function openHistory(memory) {
  const dialog = $("history-dialog");
  $("history-subtitle").textContent = `${memory.user_id} · ${clip(memory.memory, 90)}`;
  $("history-list").replaceChildren(h("li", { class: "muted", text: "Loading…" }));
  dialog.showModal();
  try {
    const path = `/memories/${segment(memory.memory_id)}/history`;
    const events = await api(path, { query: { user_id: memory.user_id } });
    $("history-list").replaceChildren(...events.map(historyEvent));
  } catch (error) {
    dialog.close();
    reportStale(error, "Could not read the history");
  }
}

// ---------------------------------------------------------------------------------------
// Sessions and their transcripts

async function loadSessions(more = false) {
  if (more && sessionsMoreLoading) return; // a second click asks for the same page
  const page = more ? state.sessionsPage + 1 : 1;
  const request = ++sessionsRequest;
  if (more) sessionsMoreLoading = true;
  $("sessions-hint").textContent = state.user === null
    ? "Every user's conversations, most recent first. Pick a user to see theirs only."
    : `${state.user}'s conversations, most recent first.`;
  try {
    const query = { user_id: state.user, page, limit: SESSIONS_PAGE_SIZE };
    const result = await api("/sessions", { query });
    if (request !== sessionsRequest) return;
    state.sessions = more ? appendNew(state.sessions, result.data, "session_id") : result.data;
    state.sessionsPage = page;
    $("more-sessions").hidden = !result.meta.has_more;
    renderSessions();
  } catch (error) {
    if (request === sessionsRequest) report(error, "Could not load the sessions");
  } finally {
    if (more) sessionsMoreLoading = false;
  }
}

function sessionItem(session) {
  const summary = session.summary && session.summary.summary;
  const meta = [plural(session.run_count, "run", "runs"), session.user_id];
  if (session.agent_id) meta.push(`agent ${session.agent_id}`);
  return h("li", {}, h("button", {
    type: "button",
    class: "session-item",
    "data-testid": "session-item",
    dataset: { sessionId: session.session_id },
    onclick: () => openSession(session),
  },
  h("span", { class: "session-top" },
    h("span", { class: "session-title", dir: "auto", text: summary || `Session ${clip(session.session_id, 14)}` }),
    timeEl(session.updated_at)),
  h("span", { class: "session-meta", text: meta.join(" · ") }),
  session.summary && session.summary.topics.length ? topicList(session.summary.topics) : null));
}

function renderSessions() {
  $("session-list").replaceChildren(...state.sessions.map(sessionItem));
  $("sessions-empty").hidden = state.sessions.length > 0;
}

const ROLE_NAMES = { user: "User", assistant: "Assistant", tool: "Tool", system: "System" };

function toolCallEl(call) {
  let args = "";
  try {
    args = JSON.stringify(call.arguments);
  } catch {
    args = "";
  }
  return h("p", { class: "tool-call" }, h("span", { class: "muted", text: "Called " }),
    h("code", { text: `${call.name}(${clip(args, 200)})` }));
}

function messageEl(message) {
  const role = ROLE_NAMES[message.role] ? message.role : "system";
  let name = ROLE_NAMES[role];
  if (role === "tool" && message.name) name = `Tool · ${message.name}`;
  const calls = message.tool_calls || [];
  return h("div", { class: `msg msg-${role}`, "data-testid": "message", dataset: { role } },
    h("span", { class: "msg-role", text: name }),
    message.content ? h("p", { class: "msg-text", dir: "auto", text: message.content }) : null,
    calls.map(toolCallEl));
}

function runMessages(run) {
  if (run.messages && run.messages.length) return run.messages;
  const messages = [{ role: "user", content: run.input }];
  if (run.content) messages.push({ role: "assistant", content: run.content });
  return messages;
}

function runEl(run, index) {
  return h("section", { class: "run", "data-testid": "run", dataset: { runId: run.run_id } },
    h("div", { class: "run-divider" },
      h("span", { text: `Run ${index + 1}` }),
      timeEl(run.created_at),
      run.status === "failed" ? h("span", { class: "badge badge-delete", text: "Failed" }) : null),
    runMessages(run).filter((m) => m.role !== "system").map(messageEl),
    run.error ? h("p", { class: "run-error", text: run.error }) : null);
}

function summaryEl(summary) {
  return [
    h("h3", { class: "summary-title", text: "Summary" }),
    h("p", { class: "summary-text", dir: "auto", text: summary.summary }),
    summary.topics.length ? topicList(summary.topics) : null,
    h("p", { class: "muted small" },
      `Covers ${plural(summary.run_count, "run", "runs")} · updated `, timeEl(summary.updated_at)),
  ];
}

async function openSession(session) {
  const dialog = $("session-dialog");
  $("session-title").textContent = `Session ${clip(session.session_id, 24)}`;
  $("session-subtitle").textContent = `${session.user_id} · ${plural(session.run_count, "run", "runs")}`;
  $("session-summary").hidden = true;
  $("transcript").replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  dialog.showModal();
  try {
    const path = `/sessions/${segment(session.session_id)}`;
    const full = await api(path, { query: { user_id: session.user_id } });
    $("session-summary").replaceChildren(...(full.summary ? summaryEl(full.summary) : []));
    $("session-summary").hidden = !full.summary;
    const runs = full.runs || [];
    const none = h("p", { class: "muted", text: "No runs yet." });
    $("transcript").replaceChildren(...(runs.length ? runs.map(runEl) : [none]));
  } catch (error) {
    dialog.close();
    report(error, "Could not open the session");
  }
}

// ---------------------------------------------------------------------------------------
// Views, dialogs and start-up

function showView(view) {
  state.view = view;
  for (const name of ["memories", "sessions"]) {
    const on = name === view;
    $(`tab-${name}`).setAttribute("aria-selected", String(on));
    $(`tab-${name}`).tabIndex = on ? 0 : -1;
    $(`${name}-view`).hidden = !on;
  }
  if (view === "sessions") loadSessions();
  else loadMemories();
}

function onTabKey(event) {
  if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
  const next = state.view === "memories" ? "sessions" : "memories";
  showView(next);
  $(`tab-${next}`).focus();
}

function closeDialogs() {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
}

function bindDialogs() {
  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
  }
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
}

function onGlobalKey(event) {
  const typing = event.target.closest("input, textarea, select, [contenteditable]");
  if (event.key === "/" && !typing && !$("search").disabled && !$("app").hidden) {
    event.preventDefault();
    $("search").focus();
  }
}

function bindEvents() {
  $("sign-in-form").addEventListener("submit", onSignIn);
  $("sign-out").addEventListener("click", signOut);
  $("error-close").addEventListener("click", clearError);
  $("search").addEventListener("input", onSearchInput);
  $("search").addEventListener("keydown", (event) => {
    if (event.key === "Enter") applySearch();
  });
  for (const id of ["search-type", "topic-filter", "sort", "page-size"]) {
    $(id).addEventListener("change", onFilterChange);
  }
  $("new-memory").addEventListener("click", () => ($("create-form").hidden ? openCreate() : closeCreate()));
  $("create-form").addEventListener("submit", onCreate);
  $("create-cancel").addEventListener("click", closeCreate);
  $("create-form").addEventListener("keydown", onCreateKey);
  $("new-text").addEventListener("input", updateCounter);
  $("select-all").addEventListener("change", (event) => selectPage(event.target.checked));
  $("bulk-clear").addEventListener("click", () => {
    state.selected.clear();
    renderSelection();
    leaveBulkBar();
  });
  $("bulk-delete").addEventListener("click", bulkDelete);
  $("prev-page").addEventListener("click", () => goToPage(shownPage() - 1));
  $("next-page").addEventListener("click", () => goToPage(shownPage() + 1));
  $("more-users").addEventListener("click", () => loadUsers("more"));
  $("find-user").addEventListener("input", onFindUserInput);
  $("more-sessions").addEventListener("click", () => loadSessions(true));
  $("tab-memories").addEventListener("click", () => showView("memories"));
  $("tab-sessions").addEventListener("click", () => showView("sessions"));
  $("tab-memories").addEventListener("keydown", onTabKey);
  $("tab-sessions").addEventListener("keydown", onTabKey);
  document.addEventListener("keydown", onGlobalKey);
  bindDialogs();
}

// What was on screen when the server stopped taking the credential (it expired or was
// revoked): signing in again as the same user, or with the API key again, comes back to
// it, with the edit that was being typed.
function keepView() {
  if ($("app").hidden) return;
  const { tokenUser, user, topic, search, page, editing, draft } = state;
  resumed = { who: tokenUser, view: { user, topic, search, page, editing, draft } };
}

async function enterApp() {
  const back = resumed && resumed.who === state.tokenUser ? resumed.view : null;
  resumed = null;
  if (back) {
    Object.assign(state, back);
  } else {
    Object.assign(state, {
      user: state.tokenUser, topic: "", search: "", page: 1, editing: null, userFilter: "",
    });
    state.selected.clear();
  }
  $("search").value = state.search;
  $("find-user").value = state.userFilter;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  renderAccount();
  renderControls();
  showView("memories");
  await Promise.all([loadUsers(back ? "again" : "first"), loadTopics()]);
}

async function init() {
  bindEvents();
  const stored = storedCredential();
  setCredential(stored ? checkCredential(stored).value : null);
  try {
    state.health = await api("/health");
  } catch (error) {
    renderAccount();
    showError(`The page cannot start: ${error.message}`);
    return;
  }
  renderAccount();
  if (state.health.auth === "api_key" && !state.credential) {
    showSignIn("");
    return;
  }
  await enterApp();
}

init();
