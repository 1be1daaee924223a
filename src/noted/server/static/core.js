// The Memories page's shared parts: its state, DOM and formatting helpers, the calls to the
// server, and the messages it shows. Every piece of data is put on the page as text
// (textContent / DOM nodes), never as HTML.

import { keepView, showSignIn } from "./signin.js";

let noticeTimer = 0;

export const STORAGE_KEY = "noted.credential";
export const SEARCH_DELAY_MS = 250;
export const USERS_PAGE_SIZE = 50;
export const SESSIONS_PAGE_SIZE = 20;
export const RUNS_PAGE_SIZE = 20; // a session's runs read at a time, newest first
export const MAX_BULK = 1000;

export const state = {
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

// Each list counts its requests (in its own module): an answer to one that a later request
// replaced (another user picked meanwhile, a slow store) is dropped, not drawn over the
// later one's.

// ---------------------------------------------------------------------------------------
// DOM helpers

export const $ = (id) => document.getElementById(id);
export const PROPERTIES = new Set(["checked", "disabled", "value", "indeterminate"]);

export function h(tag, props = {}, ...children) {
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

export const ICONS = {
  edit: ["M4 20h4L19 9l-4-4L4 16z", "M13.5 6.5l4 4"],
  history: ["M3.5 12a8.5 8.5 0 1 0 2.5-6", "M3.5 4v4.5H8", "M12 7.5V12l3 2"],
  trash: ["M4 7h16", "M9 7V4.5h6V7", "M6.5 7l1 12.5h9l1-12.5", "M10 11v5.5", "M14 11v5.5"],
};

export function icon(name) {
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

export const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
export const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
export const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
export const TIME_STEPS = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"]];

export function ago(date) {
  let value = (date.getTime() - Date.now()) / 1000;
  if (Math.abs(value) < 45) return "just now";
  for (const [size, unit] of TIME_STEPS) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return dateOnly.format(date);
}

export function timeEl(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return h("span", { class: "muted", text: "—" });
  return h("time", { datetime: iso, title: dateTime.format(date), text: ago(date) });
}

export function plural(count, one, many) {
  return `${count.toLocaleString()} ${count === 1 ? one : many}`;
}

export const LONG_MEMORY_CHARS = 600;

export function clip(text, length) {
  const chars = Array.from(text || "");
  return chars.length > length ? `${chars.slice(0, length - 1).join("")}…` : chars.join("");
}

export const MAX_MEMORY_CHARS = 5000;

// Lengths as the server counts them: in characters, not UTF-16 units (an emoji is one).
export function charCount(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

export function parseTopics(text) {
  const topics = text.split(",").map((t) => t.trim()).filter(Boolean);
  return [...new Set(topics)];
}

export function sameList(a, b) {
  return a.length === b.length && a.every((item, i) => item === b[i]);
}

export function hue(text) {
  let hash = 0;
  for (const ch of text) hash = (hash * 31 + ch.codePointAt(0)) % 360;
  return hash;
}

export function avatar(userId) {
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
export function topicCell(memory) {
  if (!memory.damaged) return topicList(memory.topics);
  return h("span", {
    class: "damaged-flag",
    "data-testid": "damaged",
    title: `Its stored topics are damaged (${memory.damaged}). Edit it to give it topics, or delete it.`,
    text: "⚠ Damaged topics",
  });
}

export function topicList(topics) {
  if (!topics || topics.length === 0) return h("span", { class: "muted small", text: "—" });
  return h("ul", { class: "chips", "aria-label": "Topics" },
    topics.map((t) => h("li", { class: "chip", "data-testid": "topic", dir: "auto", title: t, text: t })));
}

// ---------------------------------------------------------------------------------------
// Talking to the server

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function buildUrl(path, query = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

export async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { detail: clip(text, 300) };
  }
}

export async function api(path, { method = "GET", query, body } = {}) {
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

// The path and query of a route about one memory or session ("memory", "session"): its id
// in the path, percent-encoded (a "/" in it as %2F); but "." and "..", which a browser
// resolves away in a path even percent-encoded, in the query of the routes that take it
// there (/memory, /memory_history, /session).
export function aboutId(kind, id, query, history = false) {
  if (id === "." || id === "..") {
    return [history ? `/${kind}_history` : `/${kind}`, { ...query, [`${kind}_id`]: id }];
  }
  const path = `/${kind === "memory" ? "memories" : "sessions"}/${encodeURIComponent(id)}`;
  return [history ? `${path}/history` : path, query];
}

// ---------------------------------------------------------------------------------------
// Messages

export function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
}

export function report(error, context = "") {
  if (error instanceof ApiError && error.status === 401) {
    keepView();
    showSignIn(error.message);
    return;
  }
  const message = error instanceof ApiError ? error.message
    : `something went wrong on this page (${error && error.message ? error.message : error})`;
  showError(context ? `${context}: ${message}` : message);
}

export function notify(message) {
  clearError();
  const el = $("notice");
  el.textContent = message;
  el.classList.add("show");
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => el.classList.remove("show"), 3500);
}
