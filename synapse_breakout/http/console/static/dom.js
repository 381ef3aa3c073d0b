// Small DOM helpers: elements, labelled fields, the status line, the countdown.
// Every server-supplied string goes in as text, never as HTML.

import { enc, state } from "./api.js";

export const $ = (id) => document.getElementById(id);

export function h(tag, attrs = {}, ...children) {
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
export function nextId() {
  return `f${++uid}`;
}

export function field(label, input) {
  input.id = input.id || nextId();
  return h("div", { class: "field" }, h("label", { for: input.id, text: label }), input);
}

export function errorSlot() {
  return h("p", { class: "error", role: "alert" });
}

// The status line; a confirmation fades after a few seconds.
let statusTimer = null;
export function status(text, fade = false) {
  $("status").textContent = text || "";
  clearTimeout(statusTimer);
  if (fade) statusTimer = setTimeout(() => status(""), 6000);
}

// Runs an action; its error (the API's `error` text) goes next to the control.
export async function act(slot, button, fn) {
  slot.textContent = "";
  if (button) button.disabled = true;
  try {
    await fn();
    await state.refresh();
  } catch (e) {
    slot.textContent = e.message;
  } finally {
    if (button) button.disabled = false;
  }
}

// The time left, ticking once a second wherever a [data-ends-at] element is.
export function timeLeft(endsAt) {
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

export function countdown(endsAt) {
  return h("p", { class: "countdown", "data-ends-at": endsAt || "", text: timeLeft(endsAt) });
}

export function displayName(member) {
  return member.display_name ? `${member.display_name} (${member.user_id})` : member.user_id;
}

// A room's matrix.to link, as the module's notices link rooms.
export function roomLink(room) {
  const via = (room.via || []).map((s) => `via=${enc(s)}`).join("&");
  return `https://matrix.to/#/${room.room_id}${via ? "?" + via : ""}`;
}

// "Open" a room: in the client, through the widget API's navigate where the
// client allows it; otherwise the matrix.to link in a new tab.
export function openRoom(room, text) {
  const link = roomLink(room);
  return state.widget && state.canNavigate
    ? h("button", { type: "button", class: "open-room", text, onclick: () => state.widget.navigateTo(link) })
    : h("a", { class: "button open-room", href: link, target: "_blank", rel: "noopener", text });
}
