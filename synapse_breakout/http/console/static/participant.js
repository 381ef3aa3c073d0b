// A participant's view: their room, a way into it, the time left, "ask for help".

import { request, roomPath, state } from "./api.js";
import { $, act, countdown, errorSlot, field, h, openRoom, status } from "./dom.js";

export function participantView() {
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

export function renderAssignment(view) {
  const box = $("assignment");
  const mine = view.assignment;
  $("help-form").hidden = !mine;
  if (!mine) {
    box.replaceChildren(h("p", { text: view.active ? "You are in the main room." : "No break-out is running here." }));
    return;
  }
  box.replaceChildren(
    h("h3", { text: "Your break-out room" }),
    h("p", { class: "my-room", text: mine.name || mine.room_id }),
    countdown(view.ends_at),
    openRoom(mine, "Open my room"),
  );
}
