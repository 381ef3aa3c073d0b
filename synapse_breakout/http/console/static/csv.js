// A plan from a CSV file (docs/console.md#plans): a header `room,user`, then
// one line per person, fields quoted as RFC 4180 says ("Table ""A""", a comma
// inside quotes). A room listed with an empty user gets nobody assigned.
// Every error names its line.

const USER_ID = /^@[^:\s]+:\S+$/;

export class CsvError extends Error {}

// The rows of `text`: [line number, fields].
export function csvRows(text) {
  const rows = [];
  let fields = [];
  let value = "";
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  const endField = () => {
    fields.push(value);
    value = "";
  };
  const endRow = () => {
    endField();
    if (fields.length > 1 || fields[0].trim() !== "") rows.push([rowLine, fields]);
    fields = [];
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        value += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        if (c === "\n") line++;
        value += c;
      }
    } else if (c === '"' && value.trim() === "") {
      quoted = true;
      value = "";
    } else if (c === ",") {
      endField();
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      endRow();
      line++;
      rowLine = line;
    } else {
      value += c;
    }
  }
  if (quoted) throw new CsvError(`line ${rowLine}: a quote is never closed`);
  endRow();
  return rows;
}

// `{"rooms": [{"name", "users"}]}` in the order the file names the rooms.
export function planRooms(text) {
  const rows = csvRows(text.replace(/^\uFEFF/, ""));
  if (!rows.length) throw new CsvError("line 1: the file is empty; it starts with the header room,user");
  const [headerLine, header] = rows[0];
  if (header.map((f) => f.trim().toLowerCase()).join(",") !== "room,user") {
    throw new CsvError(`line ${headerLine}: the header must be room,user`);
  }
  const rooms = new Map();
  const seen = new Map();
  for (const [line, fields] of rows.slice(1)) {
    if (fields.length !== 2) {
      throw new CsvError(`line ${line}: expected 2 fields (room,user), found ${fields.length}`);
    }
    const room = fields[0].trim();
    const user = fields[1].trim();
    if (!room) throw new CsvError(`line ${line}: the room name is empty`);
    if (user && !USER_ID.test(user)) {
      throw new CsvError(`line ${line}: ${JSON.stringify(user)} is not a Matrix user ID like @name:server`);
    }
    const earlier = seen.get(user);
    if (earlier) {
      throw new CsvError(`line ${line}: ${user} is already in ${earlier.room} (line ${earlier.line})`);
    }
    if (!rooms.has(room)) rooms.set(room, []);
    if (user) {
      rooms.get(room).push(user);
      seen.set(user, { room, line });
    }
  }
  if (!rooms.size) throw new CsvError(`line ${headerLine + 1}: no rooms after the header`);
  return [...rooms].map(([name, users]) => ({ name, users }));
}
