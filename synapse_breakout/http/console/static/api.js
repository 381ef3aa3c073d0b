// The console's shared state and its one way to the server (docs/console.md).

export const API = "/_synapse/client/breakout/v1";
export const CONSOLE_API = "/_synapse/client/breakout/console/api";

export const state = {
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
  // Set by console.js: a new widget session; signing out; redrawing the room.
  renewSession: null,
  signOut: null,
  refresh: null,
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.errcode = body && body.errcode;
  }
}

// --- talking to the server ----------------------------------------------------

export async function request(method, path, body, retry = true) {
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
    await state.renewSession(); // the console session expired: a new one
    return request(method, path, body, false);
  }
  if (res.status === 401 && !state.widget && state.token) {
    state.signOut("Your session has ended; please sign in again.");
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return { status: res.status, data };
}

export const enc = encodeURIComponent;
export const roomPath = (roomId, action = "") => `${API}/rooms/${enc(roomId)}${action ? "/" + action : ""}`;
