// A user's sessions and their transcripts.

import {
  $, aboutId, api, clip, h, plural, report, RUNS_PAGE_SIZE, SESSIONS_PAGE_SIZE, state, timeEl,
  topicList,
} from "./core.js";
import { appendNew } from "./users.js";

let sessionsMoreLoading = false; // a "Show older sessions" answer is awaited
let sessionsRequest = 0;
// The open session: its runs read so far (oldest first), its run count when it was opened
// (the places of those runs: `total`) and as last read (`count`)
let transcript = null;

// ---------------------------------------------------------------------------------------
// Sessions and their transcripts

export async function loadSessions(more = false) {
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

export function sessionItem(session) {
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

export function renderSessions() {
  $("session-list").replaceChildren(...state.sessions.map(sessionItem));
  $("sessions-empty").hidden = state.sessions.length > 0;
}

export const ROLE_NAMES = { user: "User", assistant: "Assistant", tool: "Tool", system: "System" };

export function toolCallEl(call) {
  let args = "";
  try {
    args = JSON.stringify(call.arguments);
  } catch {
    args = "";
  }
  return h("p", { class: "tool-call" }, h("span", { class: "muted", text: "Called " }),
    h("code", { text: `${call.name}(${clip(args, 200)})` }));
}

export function messageEl(message) {
  const role = ROLE_NAMES[message.role] ? message.role : "system";
  let name = ROLE_NAMES[role];
  if (role === "tool" && message.name) name = `Tool · ${message.name}`;
  const calls = message.tool_calls || [];
  return h("div", { class: `msg msg-${role}`, "data-testid": "message", dataset: { role } },
    h("span", { class: "msg-role", text: name }),
    message.content ? h("p", { class: "msg-text", dir: "auto", text: message.content }) : null,
    calls.map(toolCallEl));
}

export function runMessages(run) {
  if (run.messages && run.messages.length) return run.messages;
  const messages = [{ role: "user", content: run.input }];
  if (run.content) messages.push({ role: "assistant", content: run.content });
  return messages;
}

export function runEl(run, index) {
  return h("section", { class: "run", "data-testid": "run", dataset: { runId: run.run_id } },
    h("div", { class: "run-divider" },
      h("span", { text: `Run ${index + 1}` }),
      timeEl(run.created_at),
      run.status === "failed" ? h("span", { class: "badge badge-delete", text: "Failed" }) : null),
    runMessages(run).filter((m) => m.role !== "system").map(messageEl),
    run.error ? h("p", { class: "run-error", text: run.error }) : null);
}

export function summaryEl(summary) {
  return [
    h("h3", { class: "summary-title", text: "Summary" }),
    h("p", { class: "summary-text", dir: "auto", text: summary.summary }),
    summary.topics.length ? topicList(summary.topics) : null,
    h("p", { class: "muted small" },
      `Covers ${plural(summary.run_count, "run", "runs")} · updated `, timeEl(summary.updated_at)),
  ];
}

function readRuns(session, page) {
  const [path, query] = aboutId("session", session.session_id, {
    user_id: session.user_id, runs_page: page, runs_limit: RUNS_PAGE_SIZE,
  });
  return api(path, { query });
}

// The runs read so far, each numbered by its place in the session, under a button that
// reads the page of older runs when the session has more.
function renderTranscript() {
  const { runs, total } = transcript;
  if (!runs.length) {
    $("transcript").replaceChildren(h("p", { class: "muted", text: "No runs yet." }));
    return;
  }
  const first = Math.max(total - runs.length, 0);
  const older = first > 0
    ? h("button", {
      type: "button",
      class: "btn btn-ghost btn-small",
      "data-testid": "older-runs",
      text: `Show older runs (${first} more)`,
      onclick: showOlderRuns,
    })
    : null;
  $("transcript").replaceChildren(...[older, ...runs.map((run, i) => runEl(run, first + i))]
    .filter(Boolean));
}

// The page of older runs: runs are only ever added after the others, so a run's place
// counted from the oldest stays while pages count from the newest, and move as runs come.
// The page asked for holds the newest run not shown yet (at the last count known), and of
// its runs only those before the ones shown are taken, by their places at its own count
// (asked again when so many runs came meanwhile that it held none of them).
async function showOlderRuns(event) {
  const open = transcript;
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const missing = open.total - open.runs.length; // the runs not shown: the oldest
    let added = [];
    for (let tries = 0; tries < 3 && !added.length; tries += 1) {
      const page = Math.floor((open.count - missing) / RUNS_PAGE_SIZE) + 1;
      const older = await readRuns(open.session, page);
      if (transcript !== open) return; // another session was opened meanwhile
      const runs = older.runs || [];
      const start = older.run_count - (page - 1) * RUNS_PAGE_SIZE - runs.length; // runs[0]'s
      added = runs.slice(0, Math.max(missing - start, 0));
      if (older.run_count === open.count) break;
      open.count = older.run_count;
    }
    open.runs = [...added, ...open.runs];
    renderTranscript();
  } catch (error) {
    if (transcript === open) button.disabled = false;
    report(error, "Could not load the older runs");
  }
}

export async function openSession(session) {
  const dialog = $("session-dialog");
  $("session-title").textContent = `Session ${clip(session.session_id, 24)}`;
  $("session-subtitle").textContent = `${session.user_id} · ${plural(session.run_count, "run", "runs")}`;
  $("session-summary").hidden = true;
  $("transcript").replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  const open = { session, runs: [], total: 0, count: 0 };
  transcript = open;
  dialog.showModal();
  try {
    const full = await readRuns(session, 1);
    if (transcript !== open) return;
    $("session-summary").replaceChildren(...(full.summary ? summaryEl(full.summary) : []));
    $("session-summary").hidden = !full.summary;
    open.runs = full.runs || [];
    open.total = open.count = full.run_count;
    renderTranscript();
  } catch (error) {
    dialog.close();
    report(error, "Could not open the session");
  }
}
