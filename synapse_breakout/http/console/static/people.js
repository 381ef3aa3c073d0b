// The room's members before a break-out, at any size: the first page from the
// room's view, then searched and paged through GET console/api/rooms/{id}/members
// (docs/console.md#the-consoles-endpoints).

import { CONSOLE_API, enc, request, state } from "./api.js";
import { $, displayName, field, h } from "./dom.js";

// What the card shows beyond the view's first page: a search, more pages.
const browsing = { search: "", next: null, extended: false, asked: 0 };

export function membersCard() {
  browsing.search = "";
  browsing.extended = false;
  const search = h("input", { type: "search", name: "member-search", autocomplete: "off" });
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => searchMembers(search.value.trim()), 300);
  });
  const more = h("button", { type: "button", id: "members-more", class: "secondary", text: "Show more", hidden: true });
  more.addEventListener("click", () => loadMembers(browsing.search, browsing.next, true));
  return h(
    "section",
    { class: "card", "aria-label": "Members" },
    h("h3", { id: "members-title", text: "Members" }),
    field("Search members", search),
    h("ul", { id: "members", class: "members" }),
    more,
  );
}

// The view's first page, unless the host is searching or paging.
export function renderMembers(view) {
  if (browsing.extended) return;
  show(view.members, view.members_total, view.members_next, false);
}

function searchMembers(text) {
  browsing.search = text;
  browsing.extended = text !== "";
  if (!browsing.extended) {
    if (state.view) renderMembers(state.view);
    return;
  }
  loadMembers(text, null, false);
}

async function loadMembers(search, from, append) {
  const asked = ++browsing.asked;
  const query = new URLSearchParams();
  if (search) query.set("search", search);
  if (from) query.set("from", from);
  const { data } = await request("GET", `${CONSOLE_API}/rooms/${enc(state.roomId)}/members?${query}`);
  if (asked !== browsing.asked) return; // a newer search answered first
  browsing.extended = true;
  show(data.members, data.members_total, data.members_next, append);
}

function show(members, total, next, append) {
  const list = $("members");
  if (!list) return;
  browsing.next = next;
  const items = members.map((m) =>
    h("li", {}, displayName(m), m.membership === "invite" ? h("span", { class: "tag", text: "invited" }) : null),
  );
  if (append) list.append(...items);
  else list.replaceChildren(...(items.length ? items : [h("li", { text: "Nobody matches." })]));
  $("members-title").textContent = `Members (${total})`;
  $("members-more").hidden = !next;
}

// Display names the view knows: its first page of members and the main room.
export function namesOf(view) {
  const people = [...(view.members || []), ...(view.main_room || [])];
  return Object.fromEntries(people.map((m) => [m.user_id, displayName(m)]));
}
