// The console's only way to the server: the public HTTP API on the same origin, authenticated with the key
// the user typed (sessionStorage: gone when the tab closes, never sent anywhere but this origin).
const KEY = "ragstream.apiKey";
const ADMIN = "ragstream.adminToken";

export const credentials = {
  apiKey: () => sessionStorage.getItem(KEY) || "",
  adminToken: () => sessionStorage.getItem(ADMIN) || "",
  setApiKey: (value) => sessionStorage.setItem(KEY, value),
  setAdminToken: (value) => sessionStorage.setItem(ADMIN, value),
  clear: () => sessionStorage.clear(),
};

// An RFC 9457 problem (or a network failure) as an Error whose message is fit to show.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(admin, extra = {}) {
  const secret = admin ? credentials.adminToken() : credentials.apiKey();
  return { Authorization: `Bearer ${secret}`, ...extra };
}

async function failure(response) {
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { detail: response.statusText };
  }
  return new ApiError(response.status, problem);
}

// JSON in, JSON out; `admin` uses the admin token instead of the tenant key. 204 answers null.
export async function api(path, { method = "GET", body, admin = false } = {}) {
  const init = { method, headers: headers(admin) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

// Multipart upload with progress events (fetch cannot report upload progress; XMLHttpRequest can).
export function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/documents");
    request.setRequestHeader("Authorization", `Bearer ${credentials.apiKey()}`);
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      const body = request.response || {};
      if (request.status >= 200 && request.status < 300) resolve(body);
      else reject(new ApiError(request.status, body));
    });
    request.addEventListener("error", () => reject(new ApiError(0, { detail: "network error" })));
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("title", file.name);
    request.send(form);
  });
}

// One `event:`/`data:` block of a text/event-stream, or null for comments and pings.
function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return null;
  return { name, data: JSON.parse(data.join("\n")) };
}

// POST /v1/query as Server-Sent Events. EventSource cannot send the Authorization header, so this reads the
// stream with fetch and calls onEvent(name, data) for each event: step..., sources, token..., done | error.
export async function streamQuery(body, onEvent, signal) {
  const response = await fetch("/v1/query", {
    method: "POST",
    headers: headers(false, { "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const blocks = buffer.split(/\r?\n\r?\n/);
    buffer = blocks.pop();
    for (const block of blocks) {
      const event = parseEvent(block);
      if (event) onEvent(event.name, event.data);
    }
  }
}
