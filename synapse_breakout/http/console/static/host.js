// The host's views: the start form before a break-out, the rooms as columns
// while it runs (docs/console.md).

import { API, ApiError, enc, request, roomPath, state } from "./api.js";
import { $, act, countdown, displayName, errorSlot, field, h, nextId, status } from "./dom.js";

export function progressText(operation) {
  const p = operation.progress || {};
  return `Starting: ${p.rooms_created ?? 0} of ${p.rooms_total ?? "?"} rooms created, ` +
    `${p.users_placed ?? 0} of ${p.users_total ?? "?"} people placed`;
}

// --- before a break-out ----------------------------------------------------------

// A <select> of [value, text] pairs; the first is chosen.
function choice(name, options) {
  return h("select", { name }, ...options.map(([value, text]) => h("option", { value, text })));
}

export function startView() {
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

// Starts in the background where the API offers it; otherwise waits for the
// answer. A 202 (wait: false, or a wait: true start not done within 50 s: it
// goes on) is followed on GET /operations/{id}, its progress shown, to the end.
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

export function renderMembers(members) {
  const list = $("members");
  if (!list) return;
  list.replaceChildren(
    ...members.map((m) =>
      h("li", {}, displayName(m), m.membership === "invite" ? h("span", { class: "tag", text: "invited" }) : null),
    ),
  );
}

// --- while a break-out runs -------------------------------------------------------

export function runningView() {
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
  const endForm = h("form", { class: "card", "aria-label": "End" }, h("h3", { text: "End" }), field("Message to the rooms", message), h("div", { class: "check" }, close, h("label", { for: (close.id = nextId()), text: "Remove everyone from the break-out rooms" })), end, endSlot);
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
export function renderColumns(view) {
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
export async function loadHelp(view) {
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
