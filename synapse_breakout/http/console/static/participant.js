// A participant's view: their room, a way into it, the time left, "ask for help";
// in a `move: choose` break-out, every room with a "Join" button.

import { CONSOLE_API, enc, request, roomPath, state } from "./api.js";
import { $, act, countdown, errorSlot, field, h, openRoom, roomLink, status } from "./dom.js";

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
  return h(
    "div",
    { class: "participant" },
    h("div", { id: "assignment", class: "card" }),
    h("section", { id: "choose", class: "card", "aria-label": "Choose a room", hidden: true }),
    form,
  );
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

// `move: choose`: every room, how many are in it, its capacity, "Join".
export function renderChoice(view) {
  const box = $("choose");
  box.hidden = !view.choose;
  if (!view.choose) return;
  const slot = errorSlot();
  const rows = view.choose.map((room) => {
    const name = room.name || room.room_id;
    const count = room.capacity === null ? `${room.members} in it` : `${room.members} of ${room.capacity}`;
    const join = h("button", {
      type: "button",
      text: room.mine ? "You are here" : room.full ? "Full" : "Join",
      "aria-label": room.mine ? `You are in ${name}` : `Join ${name}`,
      disabled: room.mine || room.full,
    });
    join.addEventListener("click", () =>
      act(slot, join, async () => {
        await request("POST", `${CONSOLE_API}/rooms/${enc(state.roomId)}/join`, { room_id: room.room_id });
        status(`You joined ${name}.`, true);
        if (state.widget && state.canNavigate) state.widget.navigateTo(roomLink(room));
      }),
    );
    return h(
      "li",
      { class: "choice", "data-room": room.room_id },
      h("span", { class: "name", text: name }),
      h("span", { class: `tag${room.full ? " failed" : ""}`, text: count }),
      join,
    );
  });
  box.replaceChildren(h("h3", { text: "Choose a room" }), h("ul", { class: "choices" }, ...rows), slot);
}
