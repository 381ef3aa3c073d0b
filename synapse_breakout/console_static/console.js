// The host console (docs/console.md). Plain JavaScript, no build step: it talks
// to this homeserver's login, the module's admin API and the console's own
// read endpoints, with the signed-in user's token, and polls every few seconds.

// Imported statically: as a widget, the console must listen before the page's
// load event, when the client sends its first request.
import { MatrixCapabilities, WidgetApi } from "./widget-api.js";

const API = "/_synapse/client/breakout/v1";
const CONSOLE_API = "/_synapse/client/breakout/console/api";
const LOGIN = "/_matrix/client/v3/login";
const POLL_MS = 3000;
const TOKEN_KEY = "breakout-console-token";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const widgetId = params.get("widgetId");

const state = {
  token: null,
  userId: null,
  widget: null, // the WidgetApi when opened as a widget
  canNavigate: false,
  roomId: null,
  view: null,
  failed: {}, // user ID -> error, from the last start's failed_users
  timer: null,
  shown: "", // what the room's dynamic part shows, to re-render only on change
  pollFailed: false, // the status line shows a failed poll's error
  asked: 0, // room views asked for
  shownSeq: 0, // the newest one shown
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.errcode = body && body.errcode;
  }
}

// --- small DOM helpers --------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return el;
}

let uid = 0;
function field(label, input) {
  input.id = input.id || `f${++uid}`;
  return h("div", { class: "field" }, h("label", { for: input.id, text: label }), input);
}

function errorSlot() {
  return h("p", { class: "error", role: "alert" });
}

// The status line; a confirmation fades after a few seconds.
let statusTimer = null;
function status(text, fade = false) {
  $("status").textContent = text || "";
  clearTimeout(statusTimer);
  if (fade) statusTimer = setTimeout(() => status(""), 6000);
}

// Runs an action; its error (the API's `error` text) goes next to the control.
async function act(slot, button, fn) {
  slot.textContent = "";
  if (button) button.disabled = true;
  try {
    await fn();
    await refresh();
  } catch (e) {
    slot.textContent = e.message;
  } finally {
    if (button) button.disabled = false;
  }
}

// --- talking to the server ----------------------------------------------------

async function request(method, path, body, retry = true) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try {
    data = await res.json();
  } catch {
    data = {};
  }
  if (res.status === 401 && state.widget && retry) {
    await widgetSession(); // the console session expired: a new one
    return request(method, path, body, false);
  }
  if (res.status === 401 && !state.widget && state.token) {
    signOut("Your session has ended; please sign in again.");
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return { status: res.status, data };
}

const enc = encodeURIComponent;
const roomPath = (roomId, action = "") => `${API}/rooms/${enc(roomId)}${action ? "/" + action : ""}`;

// --- signing in ---------------------------------------------------------------

function signedIn(token, userId) {
  state.token = token;
  state.userId = userId;
  $("who").textContent = `Signed in as ${userId}`;
  $("sign-in").hidden = true;
  $("sign-out").hidden = !!state.widget;
}

async function passwordSignIn(event) {
  event.preventDefault();
  const slot = $("sign-in-error");
  slot.textContent = "";
  try {
    const { data } = await request("POST", LOGIN, {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: $("username").value },
      password: $("password").value,
      initial_device_display_name: "Break-out console",
    });
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify([data.access_token, data.user_id]));
    $("password").value = "";
    signedIn(data.access_token, data.user_id);
    route();
  } catch (e) {
    slot.textContent = e.message;
  }
}

async function showSignIn(message) {
  $("sign-in").hidden = false;
  $("room-list").hidden = true;
  $("room").hidden = true;
  $("sign-in-error").textContent = message || "";
  try {
    const { data } = await request("GET", LOGIN);
    const flows = (data.flows || []).map((f) => f.type);
    $("password-form").hidden = !flows.includes("m.login.password");
    if (flows.includes("m.login.sso")) {
      const back = location.origin + location.pathname;
      $("sso-link").href = `/_matrix/client/v3/login/sso/redirect?redirectUrl=${enc(back)}`;
      $("sso").hidden = false;
    }
  } catch (e) {
    $("sign-in-error").textContent = e.message;
  }
}

async function signOut(message) {
  const token = state.token;
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  stopPolling();
  $("who").textContent = "";
  $("sign-out").hidden = true;
  if (token && !message) {
    try {
      await fetch("/_matrix/client/v3/logout", {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
      });
    } catch {
      // signed out here either way
    }
  }
  showSignIn(message);
}

// SSO comes back with ?loginToken=...; it is exchanged once, then dropped from the URL.
async function ssoReturn(loginToken) {
  history.replaceState(null, "", location.pathname + location.hash);
  const { data } = await request("POST", LOGIN, { type: "m.login.token", token: loginToken });
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify([data.access_token, data.user_id]));
  signedIn(data.access_token, data.user_id);
}

// --- as a widget ----------------------------------------------------------------

async function widgetSession() {
  const credentials = await state.widget.requestOpenIDConnectToken();
  state.token = null;
  const { data } = await request("POST", `${CONSOLE_API}/session`, credentials, false);
  signedIn(data.access_token, data.user_id);
}

async function startWidget() {
  let origin = null;
  try {
    origin = new URL(params.get("parentUrl")).origin;
  } catch {
    origin = null;
  }
  const api = new WidgetApi(widgetId, origin);
  api.requestCapability(MatrixCapabilities.MSC2931Navigate);
  const ready = new Promise((resolve) => api.once("ready", resolve));
  api.start();
  state.widget = api;
  status("Waiting for your Matrix client…");
  await ready;
  state.canNavigate = api.hasCapability(MatrixCapabilities.MSC2931Navigate);
  status("Signing in through your Matrix client…");
  await widgetSession();
  status("");
}

// --- the room list --------------------------------------------------------------

async function showRooms() {
  $("room").hidden = true;
  $("room-list").hidden = false;
  const { data } = await request("GET", `${CONSOLE_API}/rooms`);
  const list = $("rooms");
  list.replaceChildren(
    ...data.rooms.map((room) =>
      h(
        "li",
        {},
        h("a", { href: `#room=${enc(room.room_id)}`, text: room.name || room.room_id }),
        " ",
        h("span", { class: "tag", text: room.host ? "host" : "participant" }),
        room.breakout_active ? h("span", { class: "tag live", text: "break-out running" }) : null,
      ),
    ),
  );
  $("room-list-empty").hidden = data.rooms.length > 0;
}

// --- one room -------------------------------------------------------------------

function route() {
  stopPolling();
  const match = /^#room=(.+)$/.exec(location.hash);
  const roomId = match ? decodeURIComponent(match[1]) : params.get("room");
  if (!roomId) {
    state.roomId = null;
    showRooms().catch((e) => status(e.message));
    return;
  }
  state.roomId = roomId;
  state.view = null;
  state.shown = "";
  $("room-list").hidden = true;
  $("room").hidden = false;
  $("back").hidden = !!state.widget;
  $("room-body").replaceChildren();
  const poll = () =>
    refresh().catch((e) => {
      state.pollFailed = true;
      status(e.message);
    });
  poll();
  state.timer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

async function refresh() {
  if (!state.roomId) return;
  // A poll sent before an action may answer after the action's own refresh:
  // only the newest answer is shown.
  const seq = ++state.asked;
  const { data } = await request("GET", `${CONSOLE_API}/rooms/${enc(state.roomId)}`);
  if (seq < state.shownSeq || data.room_id !== state.roomId) return;
  state.shownSeq = seq;
  state.view = data;
  if (state.pollFailed) status(""); // the server answers again
  state.pollFailed = false;
  $("room-title").textContent = data.name || data.room_id;
  const body = $("room-body");
  const mode = !data.host ? "participant" : data.active ? "running" : "idle";
  if (body.dataset.mode !== mode) {
    if (body.dataset.mode) status(""); // a new stage: earlier news is stale
    body.dataset.mode = mode;
    state.shown = "";
    body.replaceChildren(
      mode === "participant" ? participantView() : mode === "running" ? runningView() : startView(),
    );
  }
  const shown = JSON.stringify([data, state.failed]);
  if (shown !== state.shown) {
    state.shown = shown;
    updateView(mode, data);
  }
  if (mode === "running") await loadHelp(data);
}

function updateView(mode, data) {
  if (mode === "idle") renderMembers(data.members);
  if (mode === "running") renderColumns(data);
  if (mode === "participant") renderAssignment(data);
  const operation = data.breakout && data.breakout.operation;
  const progress = $("progress");
  if (progress) progress.textContent = operation ? progressText(operation) : "";
}

function progressText(operation) {
  const p = operation.progress || {};
  return `Starting: ${p.rooms_created ?? 0} of ${p.rooms_total ?? "?"} rooms created, ` +
    `${p.users_placed ?? 0} of ${p.users_total ?? "?"} people placed`;
}

// The time left, ticking once a second wherever a [data-ends-at] element is.
function timeLeft(endsAt) {
  if (!endsAt) return "No deadline";
  const seconds = Math.max(0, Math.round((endsAt - Date.now()) / 1000));
  const m = Math.floor(seconds / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return `${m}:${s} left`;
}
setInterval(() => {
  for (const el of document.querySelectorAll("[data-ends-at]")) {
    el.textContent = timeLeft(Number(el.dataset.endsAt) || null);
  }
}, 1000);

function countdown(endsAt) {
  return h("p", { class: "countdown", "data-ends-at": endsAt || "", text: timeLeft(endsAt) });
}

function displayName(member) {
  return member.display_name ? `${member.display_name} (${member.user_id})` : member.user_id;
}

// --- host: before a break-out ---------------------------------------------------

// A <select> of [value, text] pairs; the first is chosen.
function choice(name, options) {
  return h("select", { name }, ...options.map(([value, text]) => h("option", { value, text })));
}

function startView() {
  const how = choice("how", [
    ["count", "Assign everyone to a number of rooms"],
    ["size", "Assign everyone to rooms of a size"],
    ["named", "Name the rooms (people join them)"],
  ]);
  const count = h("input", { type: "number", min: "1", value: "3", name: "count" });
  const names = h("textarea", { rows: "3", name: "names", placeholder: "Table 1\nTable 2" });
  const move = choice("move", [
    ["invite", "Invite them"],
    ["join", "Join them (local users)"],
    ["suggest", "Only list them"],
  ]);
  const joinRule = choice("join_rule", [
    ["restricted", "Members of this room may join"],
    ["invite", "Invited people only"],
    ["public", "Anyone"],
  ]);
  const minutes = h("input", { type: "number", min: "0", value: "15", name: "minutes" });
  const countField = field("Number of rooms", count);
  const namesField = field("Room names, one a line", names);
  namesField.hidden = true;
  how.addEventListener("change", () => {
    namesField.hidden = how.value !== "named";
    countField.hidden = how.value === "named";
    countField.querySelector("label").textContent =
      how.value === "size" ? "People per room" : "Number of rooms";
  });
  const slot = errorSlot();
  const submit = h("button", { type: "submit", text: "Start break-out" });
  const form = h(
    "form",
    { class: "card", "aria-label": "Start a break-out" },
    h("h3", { text: "Start a break-out" }),
    field("How", how),
    countField,
    namesField,
    field("Move people", move),
    field("Who may join the rooms", joinRule),
    field("Duration in minutes (0: no deadline)", minutes),
    submit,
    h("p", { id: "progress", class: "progress", role: "status" }),
    slot,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { move: move.value, join_rule: joinRule.value, txn_id: crypto.randomUUID() };
    const n = Number(count.value);
    if (how.value === "named") {
      body.rooms = names.value.split("\n").map((s) => s.trim()).filter(Boolean).map((name) => ({ name }));
    } else {
      body.auto_assign = how.value === "size" ? { room_size: n, users: "joined" } : { rooms: n, users: "joined" };
    }
    if (Number(minutes.value) > 0) body.duration_seconds = Math.round(Number(minutes.value) * 60);
    act(slot, submit, () => start(body));
  });
  return h(
    "div",
    { class: "host" },
    form,
    h("section", { class: "card", "aria-label": "Members" }, h("h3", { text: "Members" }), h("ul", { id: "members", class: "members" })),
  );
}

// Starts in the background where the API offers it (progress from GET
// /operations/{id}); otherwise waits for the answer.
async function start(body) {
  let result;
  try {
    result = await request("POST", roomPath(state.roomId), { ...body, wait: false });
  } catch (e) {
    if (!(e.status === 400 && /^wait\b/.test(e.message))) throw e;
    result = await request("POST", roomPath(state.roomId), body);
  }
  let answer = result.data;
  if (result.status === 202) {
    const path = `${API}/operations/${enc(answer.operation_id)}`;
    for (;;) {
      const { data } = await request("GET", path);
      $("progress").textContent = progressText(data);
      if (data.state === "rolled_back") throw new ApiError(400, data.error);
      if (data.state === "committed" && data.response) {
        answer = data.response;
        break;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  state.failed = Object.fromEntries((answer.failed_users || []).map((f) => [f.user_id, f.error]));
}

function renderMembers(members) {
  const list = $("members");
  if (!list) return;
  list.replaceChildren(
    ...members.map((m) =>
      h("li", {}, displayName(m), m.membership === "invite" ? h("span", { class: "tag", text: "invited" }) : null),
    ),
  );
}

// --- host: while a break-out runs -----------------------------------------------

function runningView() {
  const broadcast = h("textarea", { rows: "2", name: "broadcast" });
  const broadcastSlot = errorSlot();
  const send = h("button", { type: "submit", text: "Send to all rooms" });
  const broadcastForm = h("form", { class: "card", "aria-label": "Broadcast" }, h("h3", { text: "Broadcast" }), field("Message to every break-out room", broadcast), send, broadcastSlot);
  broadcastForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(broadcastSlot, send, async () => {
      await request("POST", roomPath(state.roomId, "broadcast"), { body: broadcast.value });
      broadcast.value = "";
      status("Sent to every break-out room.", true);
    });
  });

  const deadlineSlot = errorSlot();
  const plus = h("button", { type: "button", text: "+5 minutes" });
  plus.addEventListener("click", () =>
    act(deadlineSlot, plus, () => request("POST", roomPath(state.roomId, "deadline"), { add_seconds: 300 })),
  );
  const at = h("input", { type: "datetime-local", name: "deadline" });
  const set = h("button", { type: "button", text: "Set deadline" });
  set.addEventListener("click", () =>
    act(deadlineSlot, set, () => {
      const endsAt = at.value ? new Date(at.value).getTime() : null;
      return request("POST", roomPath(state.roomId, "deadline"), { ends_at: endsAt });
    }),
  );
  const timeCard = h("section", { class: "card", "aria-label": "Time" }, h("h3", { text: "Time" }), h("div", { id: "time" }), plus, field("New deadline (empty: none)", at), set, deadlineSlot);

  const message = h("input", { name: "end-message", value: "Back to the main room" });
  const close = h("input", { type: "checkbox", name: "close_rooms" });
  const endSlot = errorSlot();
  const end = h("button", { type: "submit", class: "danger", text: "End break-out" });
  const endForm = h("form", { class: "card", "aria-label": "End" }, h("h3", { text: "End" }), field("Message to the rooms", message), h("div", { class: "check" }, close, h("label", { for: (close.id = `f${++uid}`), text: "Remove everyone from the break-out rooms" })), end, endSlot);
  endForm.addEventListener("submit", (event) => {
    event.preventDefault();
    act(endSlot, end, async () => {
      const body = { close_rooms: close.checked };
      if (message.value.trim()) body.message = message.value;
      await request("DELETE", roomPath(state.roomId), body);
      state.failed = {};
    });
  });

  return h(
    "div",
    { class: "running" },
    h("p", { id: "progress", class: "progress", role: "status" }),
    h("p", { id: "move-error", class: "error", role: "alert" }),
    h("div", { id: "columns", class: "columns" }),
    h("div", { class: "cards" }, timeCard, broadcastForm, h("section", { class: "card", "aria-label": "Help requests" }, h("h3", { text: "Help requests" }), h("ul", { id: "help", class: "help" })), endForm),
  );
}

// Each room a column; people can be dragged, or moved with their menu.
function renderColumns(view) {
  const byName = (a, b) => (a.name || "").localeCompare(b.name || "", undefined, { numeric: true });
  const rooms = [...view.breakout.rooms].sort(byName);
  // Who is in which room: the assignment, then the rooms' own members (a
  // break-out too large to list its users), but not the hosts who run it.
  const hosts = new Set([view.user_id, view.breakout.sender]);
  const placed = new Map();
  for (const room of rooms) {
    for (const user of room.users) placed.set(user, room.room_id);
  }
  for (const room of rooms) {
    for (const [user, m] of Object.entries(room.members || {})) {
      if ((m === "join" || m === "invite") && !placed.has(user) && !hosts.has(user)) {
        placed.set(user, room.room_id);
      }
    }
  }
  const mainPeople = view.members
    .filter((m) => m.membership === "join" && !placed.has(m.user_id) && m.user_id !== view.user_id)
    .map((m) => m.user_id);
  const names = Object.fromEntries(view.members.map((m) => [m.user_id, displayName(m)]));
  const targets = [{ id: null, name: "Main room" }, ...rooms.map((r) => ({ id: r.room_id, name: r.name || r.room_id }))];
  const columns = [
    column(null, "Main room", mainPeople.map((u) => [u, "in the main room"]), targets, names),
    ...rooms.map((room) => {
      const people = [...placed].filter(([, r]) => r === room.room_id).map(([u]) => u);
      return column(room.room_id, room.name || room.room_id, people.map((u) => [u, memberStatus(room, u)]), targets, names);
    }),
  ];
  $("columns").replaceChildren(...columns);
  const time = $("time");
  if (time) time.replaceChildren(countdown(view.ends_at));
}

function memberStatus(room, user) {
  if (state.failed[user]) return "failed";
  const m = (room.members || {})[user];
  return m === "join" ? "joined" : m === "invite" ? "invited" : "assigned";
}

function column(roomId, name, people, targets, names) {
  const list = h("ul", { class: "people" });
  for (const [user, label] of people) {
    const menu = h("select", { "aria-label": `Move ${user} to` });
    for (const t of targets) {
      menu.append(h("option", { value: t.id ?? "", text: t.name, selected: t.id === roomId }));
    }
    const slot = $("move-error");
    const go = h("button", { type: "button", text: "Move" });
    go.addEventListener("click", () => act(slot, go, () => move(user, menu.value || null)));
    const item = h(
      "li",
      { draggable: "true", class: "person", "data-user": user },
      h("span", { class: "name", text: names[user] || user }),
      h("span", { class: `tag ${label}`, text: label }),
      h("span", { class: "mover" }, menu, go),
    );
    item.addEventListener("dragstart", (e) => e.dataTransfer.setData("text/plain", user));
    list.append(item);
  }
  const col = h("section", { class: "column", "aria-label": name, "data-room": roomId ?? "" }, h("h3", { text: `${name} (${people.length})` }), list);
  col.addEventListener("dragover", (e) => {
    e.preventDefault();
    col.classList.add("over");
  });
  col.addEventListener("dragleave", () => col.classList.remove("over"));
  col.addEventListener("drop", (e) => {
    e.preventDefault();
    col.classList.remove("over");
    const user = e.dataTransfer.getData("text/plain");
    if (user) act($("move-error"), null, () => move(user, roomId));
  });
  return col;
}

function move(user, to) {
  return request("POST", roomPath(state.roomId, "move"), { user_id: user, to });
}

// Help requests are the module's `help` notices in the parent.
async function loadHelp(view) {
  const list = $("help");
  if (!list) return;
  if (state.widget) {
    // A console session cannot read the timeline; the client beside it shows it.
    list.replaceChildren(h("li", { text: "Help requests appear in this room's timeline." }));
    return;
  }
  const filter = enc(JSON.stringify({ types: ["m.room.message"], limit: 50 }));
  let events;
  try {
    ({ data: { chunk: events } } = await request("GET", `/_matrix/client/v3/rooms/${enc(view.room_id)}/messages?dir=b&limit=50&filter=${filter}`));
  } catch {
    return;
  }
  // This break-out's: sent since it started (its event ID changes with each move).
  const asks = events.filter(
    (e) => e.content["org.matrix.msc3985.notice"] === "help" && e.origin_server_ts >= view.breakout.started_at,
  );
  list.replaceChildren(
    ...(asks.length
      ? asks.map((e) => h("li", {}, h("time", { text: new Date(e.origin_server_ts).toLocaleTimeString() }), " ", e.content.body))
      : [h("li", { text: "None yet." })]),
  );
}

// --- participant ----------------------------------------------------------------

function participantView() {
  const message = h("input", { name: "help-message", maxlength: "1000" });
  const slot = errorSlot();
  const ask = h("button", { type: "submit", text: "Ask for help" });
  const form = h("form", { id: "help-form", class: "card", "aria-label": "Ask for help" }, field("What do you need? (optional)", message), ask, slot);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const mine = state.view.assignment;
    act(slot, ask, async () => {
      const body = { room_id: mine.room_id };
      if (message.value.trim()) body.message = message.value;
      await request("POST", roomPath(state.roomId, "help"), body);
      message.value = "";
      status("Your host has been asked for help.", true);
    });
  });
  return h("div", { class: "participant" }, h("div", { id: "assignment", class: "card" }), form);
}

function roomLink(room) {
  const via = (room.via || []).map((s) => `via=${enc(s)}`).join("&");
  // As the module's notices link rooms (docs/console.md).
  return `https://matrix.to/#/${room.room_id}${via ? "?" + via : ""}`;
}

function renderAssignment(view) {
  const box = $("assignment");
  const mine = view.assignment;
  $("help-form").hidden = !mine;
  if (!mine) {
    box.replaceChildren(h("p", { text: view.active ? "You are in the main room." : "No break-out is running here." }));
    return;
  }
  const link = roomLink(mine);
  const open = state.widget && state.canNavigate
    ? h("button", { type: "button", text: "Open my room", onclick: () => state.widget.navigateTo(link) })
    : h("a", { class: "button", href: link, target: "_blank", rel: "noopener", text: "Open my room" });
  box.replaceChildren(
    h("h3", { text: "Your break-out room" }),
    h("p", { class: "my-room", text: mine.name || mine.room_id }),
    countdown(view.ends_at),
    open,
  );
}

// --- start ----------------------------------------------------------------------

async function main() {
  $("password-form").addEventListener("submit", passwordSignIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("back").addEventListener("click", (e) => {
    e.preventDefault();
    location.hash = "";
  });
  window.addEventListener("hashchange", route);
  try {
    if (widgetId) {
      await startWidget();
    } else if (params.get("loginToken")) {
      await ssoReturn(params.get("loginToken"));
    } else {
      const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
      if (!saved) return showSignIn();
      signedIn(saved[0], saved[1]);
    }
    route();
  } catch (e) {
    status(e.message);
    if (!widgetId) showSignIn(e.message);
  }
}

main();
