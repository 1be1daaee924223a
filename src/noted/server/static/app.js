// The Memories page: browse, search, edit and delete what noted remembers about users,
// read a memory's history and a session's transcript. Plain browser JavaScript modules,
// no build: this one binds the page's events and starts it.

import { $, api, clearError, showError, state } from "./core.js";
import {
  bulkDelete, closeCreate, leaveBulkBar, onCreate, onCreateKey, openCreate, renderSelection,
  selectPage, updateCounter,
} from "./edit.js";
import {
  applySearch, goToPage, loadMemories, onFilterChange, onSearchInput, shownPage,
} from "./memories.js";
import { loadSessions } from "./sessions.js";
import {
  checkCredential, enterApp, onSignIn, renderAccount, setCredential, showSignIn, signOut,
  storedCredential,
} from "./signin.js";
import { loadUsers, onFindUserInput } from "./users.js";

// ---------------------------------------------------------------------------------------
// Views, dialogs and start-up

export function showView(view) {
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

export function closeDialogs() {
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
