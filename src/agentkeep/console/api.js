// Every call the console makes goes through here, to the public HTTP API, with the tab's API key.
// The key lives in sessionStorage only: it is gone when the tab closes and never reaches localStorage
// or a cookie.

const KEY_NAME = "agentkeep.apiKey";

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

let askForKey = () => {};

export const auth = {
  /** Whether this server asks for API keys (the page it served says so on <html data-auth>). */
  required: document.documentElement.dataset.auth !== "off",
  key: () => sessionStorage.getItem(KEY_NAME),
  save: (key) => sessionStorage.setItem(KEY_NAME, key),
  forget: () => sessionStorage.removeItem(KEY_NAME),
  /** Called when the server refuses the key (or there is none): the app shows the login form. */
  onKeyRefused: (handler) => {
    askForKey = handler;
  },
};

function headers(accept, withBody) {
  const result = { Accept: accept };
  const key = auth.key();
  if (key) result.Authorization = `Bearer ${key}`;
  if (withBody) result["Content-Type"] = "application/json";
  return result;
}

function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function send(path, { method = "GET", body, params, accept = "application/json" } = {}) {
  try {
    return await fetch(withQuery(path, params), {
      method,
      headers: headers(accept, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "the server did not answer: is agentkeep still running?");
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** The contract's error envelope as an ApiError; a refused key also brings up the login form. */
function failure(response, data) {
  const error = data && data.error ? data.error : { type: `http_${response.status}`, message: response.statusText };
  // A refused key carries WWW-Authenticate; a 401 without it (e.g. `user_id` without an admin key)
  // is about the request, not the key, so it is shown rather than logging the visitor out.
  if (response.status === 401 && (response.headers.has("WWW-Authenticate") || !auth.key())) {
    auth.forget();
    askForKey(error.message);
  }
  return new ApiError(response.status, error.type, error.message);
}

/** GET or POST a JSON route; resolves to the body, rejects with an ApiError. */
export async function api(path, options) {
  const response = await send(path, options);
  const data = await readJson(response);
  if (!response.ok) throw failure(response, data);
  return data;
}

/** GET a file as a Blob, with the tab's key; rejects with an ApiError (the error envelope) otherwise. */
export async function download(path, params) {
  const response = await send(path, { params, accept: "application/octet-stream" });
  if (!response.ok) throw failure(response, await readJson(response));
  return response.blob();
}

/** /health answers 503 with the same body when degraded: both are an answer worth showing. */
export async function health() {
  const response = await send("/health");
  const data = await readJson(response);
  if (!data || (!response.ok && response.status !== 503)) throw failure(response, data);
  return data;
}

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return null;
  try {
    return { name, data: JSON.parse(data.join("\n")) };
  } catch {
    return null;
  }
}

/**
 * POST /v1/runs (or, with `path`, another route that answers like it: a resume) with stream: true
 * and hand each Server-Sent Event to `onEvent(name, data)`. EventSource can only GET, so the stream
 * is read with fetch and a ReadableStream.
 */
export async function streamRun(body, onEvent, path = "/v1/runs") {
  const response = await send(path, { method: "POST", body: { ...body, stream: true }, accept: "text/event-stream" });
  if (!response.ok) throw failure(response, await readJson(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch {
      throw new ApiError(0, "network", "the stream was cut before the run finished");
    }
    if (chunk.done) break;
    buffer += chunk.value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) onEvent(event.name, event.data);
    }
  }
}
