// The users panel: per-user stats, the picker and "Find a user".

import {
  $, api, avatar, h, plural, report, SEARCH_DELAY_MS, state, timeEl, USERS_PAGE_SIZE,
} from "./core.js";
import { loadMemories, loadTopics, renderControls } from "./memories.js";
import { loadSessions } from "./sessions.js";

let usersMoreLoading = false; // a "Show more users" answer is awaited
let findUserTimer = 0;
let usersRequest = 0;

// ---------------------------------------------------------------------------------------
// Users: per-user stats, and the picker

// The users' stats: "first" their first page, "more" the next one, "again" as many pages as
// are listed (after a write: a user listed from a later page stays listed, with its count).
export async function loadUsers(pages = "first") {
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
export function appendNew(list, next, key) {
  const known = new Set(list.map((item) => item[key]));
  return list.concat(next.filter((item) => !known.has(item[key])));
}

export function userItem(userId, stats) {
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

export function allUsersStats() {
  if (state.usersMore || state.users.length === 0 || state.userFilter) return null;
  const count = state.users.reduce((sum, u) => sum + u.memory_count, 0);
  return { memory_count: count, last_updated: state.users[0].last_updated };
}

export function renderUsers() {
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

export function selectUser(userId) {
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

export function onFindUserInput() {
  window.clearTimeout(findUserTimer);
  findUserTimer = window.setTimeout(() => {
    const text = $("find-user").value.trim();
    if (text === state.userFilter) return;
    state.userFilter = text;
    loadUsers("first");
  }, SEARCH_DELAY_MS);
}
