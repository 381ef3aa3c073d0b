// Plans (docs/console.md#plans): the room's stored plans and "Same groups as
// last time", each started with one press; the start form saved as a plan; a
// plan imported from a CSV file of `room,user` lines.

import { enc, request, roomPath, state } from "./api.js";
import { $, act, errorSlot, field, h, status } from "./dom.js";
import { planRooms } from "./csv.js";
import { start } from "./start.js";

const LAST = "last";

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

// A plan's ID from its name: saving under the same name replaces it.
export function planIdOf(name) {
  const id = name.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64);
  return id && id !== LAST ? id : `plan-${Date.now()}`;
}

export function planSummary(plan) {
  const parts = [];
  if (plan.rooms) {
    const people = plan.rooms.reduce((n, room) => n + (room.users || []).length, 0);
    parts.push(plural(plan.rooms.length, "room"), plural(people, "person", "people"));
  } else if (plan.auto_assign) {
    const a = plan.auto_assign;
    parts.push(a.rooms ? `everyone in ${plural(a.rooms, "room")}` : `everyone in rooms of ${a.room_size}`);
  }
  if (plan.move === "choose") parts.push("they choose");
  if (plan.room_capacity) parts.push(`up to ${plan.room_capacity} a room`);
  if (plan.duration_seconds) parts.push(`${Math.round(plan.duration_seconds / 60)} min`);
  return parts.join(", ");
}

function notInRoomText(plan) {
  const away = plan.not_in_room || [];
  return away.length ? `Not in this room now (a start leaves them out): ${away.join(", ")}` : "";
}

const planPath = (planId = "") => roomPath(state.roomId, `plans${planId ? "/" + enc(planId) : ""}`);

// The card; `formBody` gives the start form's request, to save as a plan.
export function plansCard(formBody) {
  const slot = errorSlot();
  const name = h("input", { name: "plan-name", maxlength: "255" });
  const save = h("button", { type: "button", text: "Save as plan" });
  save.addEventListener("click", () =>
    act(slot, save, async () => {
      const { txn_id: _, ...fields } = formBody();
      const planName = name.value.trim() || "Plan";
      const { data } = await request("PUT", planPath(planIdOf(planName)), { name: planName, ...fields });
      status(`Saved the plan “${data.name}”.`, true);
      await loadPlans();
    }),
  );
  return h(
    "section",
    { class: "card", "aria-label": "Plans" },
    h("h3", { text: "Plans" }),
    h("ul", { id: "plans", class: "plans" }),
    slot,
    h("div", { class: "inline" }, field("Save the start form as a plan named", name), save),
    csvImport(),
  );
}

function csvImport() {
  const slot = errorSlot();
  const file = h("input", { type: "file", accept: ".csv,text/csv", name: "csv-file" });
  const text = h("textarea", { rows: "4", name: "csv", placeholder: "room,user\nTable 1,@ada:example.org" });
  const name = h("input", { name: "csv-plan-name", value: "Imported plan" });
  const absent = h("p", { class: "warning", role: "status" });
  file.addEventListener("change", async () => {
    if (file.files[0]) text.value = await file.files[0].text();
  });
  const go = h("button", { type: "button", text: "Import plan" });
  go.addEventListener("click", () =>
    act(slot, go, async () => {
      absent.textContent = "";
      const rooms = planRooms(text.value);
      const planName = name.value.trim() || "Imported plan";
      const { data } = await request("PUT", planPath(planIdOf(planName)), { name: planName, rooms });
      status(`Imported the plan “${data.name}”: ${planSummary(data)}.`, true);
      absent.textContent = notInRoomText(data);
      await loadPlans();
    }),
  );
  return h(
    "details",
    { class: "import" },
    h("summary", { text: "Import a plan from a CSV file" }),
    h("p", { class: "hint", text: "A header line room,user, then one line per person: the room's name and their Matrix ID." }),
    field("Name of the imported plan", name),
    field("CSV file", file),
    field("CSV text", text),
    go,
    absent,
    slot,
  );
}

export async function loadPlans() {
  const list = $("plans");
  if (!list) return;
  const { data } = await request("GET", planPath());
  const items = data.plans.map(planItem);
  list.replaceChildren(...(items.length ? items : [h("li", { text: "No plans yet." })]));
}

function planItem(plan) {
  const last = plan.plan_id === LAST;
  const title = last ? "Same groups as last time" : plan.name;
  const slot = errorSlot();
  const go = last
    ? h("button", { type: "button", text: "Start the same groups" })
    : h("button", { type: "button", text: "Start", "aria-label": `Start ${title}` });
  go.addEventListener("click", () => act(slot, go, () => startPlan(plan)));
  const item = h(
    "li",
    { class: "plan", "data-plan": plan.plan_id },
    h("strong", { text: title }),
    h("span", { class: "summary", text: planSummary(plan) }),
    go,
  );
  if (!last) {
    const drop = h("button", { type: "button", class: "secondary", text: "Delete", "aria-label": `Delete ${title}` });
    drop.addEventListener("click", () =>
      act(slot, drop, async () => {
        await request("DELETE", planPath(plan.plan_id));
        await loadPlans();
      }),
    );
    item.append(drop);
  }
  item.append(slot);
  return item;
}

async function startPlan(plan) {
  const answer = await start({ plan: plan.plan_id, txn_id: crypto.randomUUID() });
  await state.refresh(); // the running view first: it clears older news
  const left = (answer.failed_users || []).filter((f) => !placedSomewhere(answer, f.user_id));
  if (left.length) {
    status(`Left out, no longer in this room: ${left.map((f) => f.user_id).join(", ")}`);
  }
}

function placedSomewhere(answer, user) {
  return (answer.rooms || []).some((room) => (room.users || []).includes(user));
}
