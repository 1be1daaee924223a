// Signing in and out, and coming back to the view a refused credential interrupted.

import { closeDialogs, showView } from "./app.js";
import { $, api, clearError, notify, state, STORAGE_KEY } from "./core.js";
import { loadTopics, renderControls } from "./memories.js";
import { loadUsers } from "./users.js";

let resumed = null; // the view a refused credential interrupted (see keepView)

// ---------------------------------------------------------------------------------------
// Sign-in: an API key or a user token, kept in sessionStorage for this tab

export function tokenSubject(credential) {
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

export function setCredential(value) {
  state.credential = value || null;
  state.tokenUser = state.credential ? tokenSubject(state.credential) : null;
  try {
    if (state.credential) sessionStorage.setItem(STORAGE_KEY, state.credential);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage may be unavailable (private modes): the credential lives in memory only
  }
}

export function storedCredential() {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function signInError(message) {
  $("sign-in-error").textContent = message || "";
  $("sign-in-error").hidden = !message;
}

export function showSignIn(message) {
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
export const INVISIBLE = /[\u200B-\u200D\u2060\uFEFF]/g;

// A pasted key or token less what a copy added around or inside it, or what is wrong with
// it: a request header carries characters up to U+00FF only, and no line breaks.
export function checkCredential(text) {
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

export async function onSignIn(event) {
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

export function signOut() {
  resumed = null;
  setCredential(null);
  showSignIn("");
  notify("Signed out");
}

export function renderAccount() {
  const health = state.health;
  $("server-info").textContent = health
    ? `noted ${health.version} · ${health.auth === "open" ? "open access" : "API key"}`
    : "noted";
  const who = $("signed-in-as");
  who.hidden = !state.credential;
  who.textContent = state.tokenUser ? `Signed in as ${state.tokenUser}` : "Signed in with the API key";
  $("sign-out").hidden = !state.credential;
}


// What was on screen when the server stopped taking the credential (it expired or was
// revoked): signing in again as the same user, or with the API key again, comes back to
// it, with the edit that was being typed.
export function keepView() {
  if ($("app").hidden) return;
  const { tokenUser, user, topic, search, page, editing, draft } = state;
  resumed = { who: tokenUser, view: { user, topic, search, page, editing, draft } };
}

export async function enterApp() {
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
