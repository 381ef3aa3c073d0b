// Starting a break-out, from the form or from a plan: in the background where
// the API offers it, otherwise waiting for the answer. A 202 (wait: false, or a
// wait: true start not done within 50 s: it goes on) is followed on GET
// /operations/{id}, its progress shown, to the end (docs/console.md).

import { API, ApiError, enc, request, roomPath, state } from "./api.js";
import { $ } from "./dom.js";

export function progressText(operation) {
  const p = operation.progress || {};
  return `Starting: ${p.rooms_created ?? 0} of ${p.rooms_total ?? "?"} rooms created, ` +
    `${p.users_placed ?? 0} of ${p.users_total ?? "?"} people placed`;
}

function showProgress(operation) {
  const slot = $("progress");
  if (slot) slot.textContent = progressText(operation);
}

// Returns the start's answer; the people it could not place are kept in
// state.failed for the columns.
export async function start(body) {
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
      showProgress(data);
      if (data.state === "rolled_back") throw new ApiError(400, data.error);
      if (data.state === "committed" && data.response) {
        answer = data.response;
        break;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  state.failed = Object.fromEntries((answer.failed_users || []).map((f) => [f.user_id, f.error]));
  return answer;
}
