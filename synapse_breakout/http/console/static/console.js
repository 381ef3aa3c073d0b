// The host console (docs/console.md). Plain JavaScript, no build step: it talks
// to this homeserver's login, the module's admin API and the console's own
// read endpoints, with the signed-in user's token, and polls every few seconds.

// Imported statically: as a widget, the console must listen before the page's
// load event, when the client sends its first request.
import { MatrixCapabilities, WidgetApi } from "./widget-api.js";

import { CONSOLE_API, enc, request, state } from "./api.js";
import { $, h, status } from "./dom.js";
import { renderColumns, renderHelp, runningView, startView } from "./host.js";
import { participantView, renderAssignment, renderChoice } from "./participant.js";
import { renderMembers } from "./people.js";
import { loadPlans } from "./plans.js";
import { progressText } from "./start.js";

const LOGIN = "/_matrix/client/v3/login";
const POLL_MS = 3000;
const TOKEN_KEY = "breakout-console-token";
const SSO_STATE_KEY = "breakout-console-sso-state";

const params = new URLSearchParams(location.search);
const widgetId = params.get("widgetId");

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
      // The way back carries a state only this page knows: a loginToken that
      // comes back without it was not asked for here (login CSRF).
      const ssoState = randomState();
      sessionStorage.setItem(SSO_STATE_KEY, ssoState);
      const back = `${location.origin}${location.pathname}?sso_state=${ssoState}`;
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

function randomState() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// SSO comes back with ?loginToken=...&sso_state=...; the token is exchanged
// once, only if the state is the one this page sent, then dropped from the URL.
async function ssoReturn(loginToken) {
  history.replaceState(null, "", location.pathname + location.hash);
  const expected = sessionStorage.getItem(SSO_STATE_KEY);
  sessionStorage.removeItem(SSO_STATE_KEY);
  if (!expected || params.get("sso_state") !== expected) {
    throw new Error("This sign-in was not started from this page: please sign in again.");
  }
  const { data } = await request("POST", LOGIN, { type: "m.login.token", token: loginToken });
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify([data.access_token, data.user_id]));
  signedIn(data.access_token, data.user_id);
}

// --- as a widget ----------------------------------------------------------------

// A console session is bound to the widget's room (the URL's room=$matrix_room_id).
async function widgetSession() {
  const roomId = params.get("room");
  if (!roomId) {
    throw new Error("This widget's address lacks room=$matrix_room_id: add it again as docs/console.md shows.");
  }
  const credentials = await state.widget.requestOpenIDConnectToken();
  state.token = null;
  const { data } = await request("POST", `${CONSOLE_API}/session`, { ...credentials, room_id: roomId }, false);
  signedIn(data.access_token, data.user_id);
}

// Only the client that embeds the console speaks for it: a message from any
// other window (a sibling frame racing a forged reply) or origin is dropped
// before the widget library sees it.
function acceptOnlyFromParent(origin) {
  window.addEventListener(
    "message",
    (event) => {
      if (event.source !== window.parent || (origin && event.origin !== origin)) {
        event.stopImmediatePropagation();
      }
    },
    { capture: true },
  );
}

async function startWidget() {
  let origin = null;
  try {
    origin = new URL(params.get("parentUrl")).origin;
  } catch {
    origin = null;
  }
  acceptOnlyFromParent(origin);
  const api = new WidgetApi(widgetId, origin); // replies go to that origin only
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
  // With the version shown, an unchanged room answers only "unchanged".
  const seq = ++state.asked;
  const known = state.view && state.view.room_id === state.roomId ? state.view.version : null;
  const since = known ? `?since=${enc(known)}` : "";
  const { data } = await request("GET", `${CONSOLE_API}/rooms/${enc(state.roomId)}${since}`);
  if (seq < state.shownSeq || data.room_id !== state.roomId) return;
  state.shownSeq = seq;
  if (state.pollFailed) status(""); // the server answers again
  state.pollFailed = false;
  if (data.unchanged && data.version === known) return;
  state.view = data;
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
    if (mode === "idle") loadPlans().catch((e) => status(e.message));
  }
  const shown = JSON.stringify([data, state.failed]);
  if (shown !== state.shown) {
    state.shown = shown;
    updateView(mode, data);
  }
}

function updateView(mode, data) {
  if (mode === "idle") renderMembers(data);
  if (mode === "running") {
    renderColumns(data);
    renderHelp(data);
  }
  if (mode === "participant") {
    renderAssignment(data);
    renderChoice(data);
  }
  const operation = data.breakout && data.breakout.operation;
  const progress = $("progress");
  if (progress) progress.textContent = operation ? progressText(operation) : "";
}

// --- start ----------------------------------------------------------------------

async function main() {
  state.renewSession = widgetSession;
  state.signOut = signOut;
  state.refresh = refresh;
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
