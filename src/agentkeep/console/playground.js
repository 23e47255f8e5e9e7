// The playground: pick an agent, send a message (with an image attached, if you like), watch the
// answer stream in with its tool calls (a structured output as it grows; a response the agent threw
// away is taken off again), approve or deny the tool calls it waits on and watch it go on in place,
// continue the session or start a new one, or run in the background and watch the status change.
// Its DOM is built once and kept, so leaving for another view and coming back loses nothing, not
// even a stream in progress.

import { api, streamRun } from "./api.js";
import { outputBlock, pendingCalls } from "./approvals.js";
import { ACTIVE, FINAL, badge, h, ms, plural, poll, runLink, tokens, usd } from "./dom.js";

const BACKGROUND_POLL_MS = 1000;
const IMAGE_TYPES = "image/png,image/jpeg,image/gif,image/webp"; // what the API accepts as images
export const CONTINUE_KEY = "agentkeep.continueSession";

let root = null;
const state = { sessionId: null, busy: false, report: () => {} };
const parts = {};

function build() {
  parts.agent = h("select", { id: "agent", name: "agent", "aria-label": "Agent" });
  parts.session = h("code", { id: "session-id" }, "new");
  parts.background = h("input", { type: "checkbox", id: "background", name: "background" });
  parts.transcript = h("ol", { class: "transcript", id: "transcript", "aria-live": "polite" });
  parts.message = h("textarea", {
    id: "message", name: "message", rows: 2, placeholder: "Message the agent… (Enter sends, Shift+Enter for a new line)",
  });
  parts.image = h("input", { type: "file", id: "image", name: "image", accept: IMAGE_TYPES, hidden: true });
  parts.attached = h("span", { class: "attached", id: "attached" });
  parts.image.addEventListener("change", () => {
    const file = parts.image.files[0];
    parts.attached.textContent = file ? file.name : "";
  });
  const attach = h("label", { class: "ghost attach", for: "image", title: "Attach an image" }, "Image", parts.image);
  parts.send = h("button", { type: "submit", id: "send" }, "Send");
  const form = h("form", { class: "composer", onsubmit: onSubmit }, parts.message, attach, parts.attached, parts.send);
  parts.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  return h(
    "section",
    { class: "playground" },
    h(
      "div",
      { class: "toolbar" },
      h("label", null, "Agent ", parts.agent),
      h("span", { class: "session" }, "Session ", parts.session),
      h("button", { type: "button", class: "ghost", id: "new-session", onclick: newSession }, "New session"),
      h("label", { class: "check" }, parts.background, " Run in background"),
    ),
    parts.transcript,
    form,
  );
}

async function loadAgents() {
  const { agents } = await api("/v1/agents");
  parts.agent.replaceChildren(
    ...agents.map((agent) =>
      h("option", { value: agent.name, selected: agent.default }, agent.model ? `${agent.name} (${agent.model})` : agent.name),
    ),
  );
}

function newSession() {
  state.sessionId = null;
  parts.session.textContent = "new";
  parts.transcript.replaceChildren();
  parts.message.focus();
}

function useSession(sessionId) {
  state.sessionId = sessionId;
  parts.session.textContent = sessionId;
}

function item(kind, ...children) {
  const li = h("li", { class: `turn ${kind}` }, ...children);
  parts.transcript.append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function errorLine(error) {
  return h("p", { class: "error-text" }, error.type ? `${error.type}: ${error.message}` : String(error.message || error));
}

function summary(result) {
  const bits = [
    plural(result.usage ? result.usage.requests : 0, "request"),
    plural(tokens(result.usage), "token"),
    usd(result.cost_usd),
    ms(result.duration_ms),
  ];
  return h("p", { class: "meta" }, "run ", runLink(result.run_id), ` · ${bits.join(" · ")}`);
}

/**
 * The assistant's turn as it streams: text, structured output and tool calls in the order they
 * arrive. What the current model response streamed (its text and output) is kept apart, so a
 * `model.retry` can take it off again; tool calls and their results stay.
 */
function streamedTurn() {
  const body = h("div", { class: "answer" });
  const li = item("assistant", h("span", { class: "role" }, "assistant"), body);
  let text = null;
  let output = null;
  let response = []; // what the model response being streamed added
  const calls = new Map(); // tool_call_id → its chip
  const denied = new Set(); // calls the person denied: their result says so, not "failed"
  const add = (el) => {
    body.append(el);
    response.push(el);
    return el;
  };
  return {
    li,
    body,
    delta(chunk) {
      if (!text) text = add(h("span", { class: "text" }));
      text.textContent += chunk;
    },
    output(value) {
      const block = outputBlock(value);
      if (output) output.replaceWith(block);
      else body.append(block);
      output = block;
      response.push(block);
    },
    retry(reason) {
      for (const el of response) el.remove();
      response = [];
      text = null;
      output = null;
      body.append(h("p", { class: "meta retried" }, `↻ retried: ${reason}`));
    },
    toolCall(id, name, args) {
      const status = h("span", { class: "tool-state" }, "running…");
      const chip = h("div", { class: "tool pending", "data-tool": name, "data-call": id }, h("span", { class: "tool-name" }, name),
        h("code", { class: "tool-args" }, JSON.stringify(args ?? {})), status);
      calls.get(id)?.chip.remove(); // a resumed run calls an approved tool again: one chip for it
      calls.set(id, { chip, status });
      body.append(chip);
      text = null;
      response = [];
    },
    toolResult(id, ok, content) {
      const call = calls.get(id);
      if (!call) return;
      call.chip.classList.replace("pending", ok ? "done" : "failed");
      call.status.textContent = ok ? "done" : denied.has(id) ? "denied" : "failed";
      call.status.title = content || "";
      response = [];
    },
    /** The run waits on these calls: their chips give way to the form that decides them. */
    waitingOn(pending) {
      for (const { tool_call_id: id } of pending) {
        calls.get(id)?.chip.remove();
        calls.delete(id);
      }
    },
    decided({ approvals }) {
      for (const [id, approved] of Object.entries(approvals)) if (approved === false) denied.add(id);
    },
  };
}

/** Follow a run's event stream into `turn`; resolves to the run's last event, if one came. */
async function follow(turn, body, path) {
  let last = null;
  await streamRun(body, (name, data) => {
    if (name === "run.started") useSession(data.session_id);
    else if (name === "text.delta") turn.delta(data.text);
    else if (name === "output.delta") turn.output(data.output);
    else if (name === "model.retry") turn.retry(data.reason);
    else if (name === "tool.call") turn.toolCall(data.tool_call_id, data.name, data.args);
    else if (name === "tool.result") turn.toolResult(data.tool_call_id, data.ok, data.content);
    else if (name === "run.completed" || name === "run.waiting" || name === "run.failed") last = { name, data };
    turn.li.scrollIntoView({ block: "end" });
  }, path);
  return last;
}

async function sendStreamed(message, agent) {
  const turn = streamedTurn();
  settle(turn, await follow(turn, { message, agent, session_id: state.sessionId || undefined }));
}

/** The end of a streamed run in its turn; a wait shows its calls, whose answers resume it in place. */
function settle(turn, ended) {
  if (!ended) {
    turn.li.append(errorLine({ type: "stream", message: "the stream ended before the run did" }));
  } else if (ended.name === "run.waiting") {
    const path = `/v1/runs/${encodeURIComponent(ended.data.run_id)}/resume`;
    const pending = ended.data.pending || [];
    turn.waitingOn(pending);
    const form = pendingCalls(pending, (decisions) => {
      form.remove(); // the resumed run shows each call again, with its result
      turn.decided(decisions);
      busyWhile(async () => settle(turn, await follow(turn, decisions, path)));
    });
    turn.body.append(form);
  } else if (ended.name === "run.completed") {
    const { output } = ended.data;
    if (typeof output === "string") {
      if (output && !turn.body.querySelector(".text")) turn.delta(output);
    } else if (output !== null && output !== undefined && !turn.body.querySelector(".output-json")) {
      turn.output(output);
    }
    turn.li.append(summary(ended.data));
  } else {
    turn.li.classList.add("failed");
    turn.li.append(errorLine(ended.data.error || ended.data));
  }
}

async function sendInBackground(message, agent) {
  const accepted = await api("/v1/runs", {
    method: "POST",
    body: { message, agent, background: true, session_id: state.sessionId || undefined },
  });
  useSession(accepted.session_id);
  let status = badge(accepted.status);
  const output = h("div", { class: "answer" });
  const cancel = h("button", { type: "button", class: "ghost small" }, "Cancel");
  const li = item("assistant background", h("span", { class: "role" }, "background run"),
    h("p", { class: "meta" }, runLink(accepted.run_id), " ", status, " ", cancel), output);
  li.dataset.runId = accepted.run_id;
  let shown = null; // the wait whose calls are on screen (a resume may end in another)
  const show = (run) => {
    const next = badge(run.status);
    status.replaceWith(next);
    status = next;
    cancel.hidden = !ACTIVE.has(run.status);
    const wait = run.status === "waiting_approval" ? (run.pending || []).map((p) => p.tool_call_id).join(" ") : null;
    if (wait && wait !== shown) {
      shown = wait;
      output.replaceChildren(pendingCalls(run.pending, (decisions) => {
        api(`/v1/runs/${encodeURIComponent(accepted.run_id)}/resume`, { method: "POST", body: { ...decisions, background: true } })
          .then(() => output.replaceChildren(), state.report);
      }));
    }
    if (!FINAL.has(run.status)) return true;
    if (typeof run.output === "string" && run.output) output.replaceChildren(h("span", { class: "text" }, run.output));
    else if (run.output !== undefined && run.output !== null) output.replaceChildren(outputBlock(run.output));
    if (run.error) output.replaceChildren(errorLine(run.error));
    li.append(summary({ ...run, run_id: accepted.run_id }));
    return false;
  };
  cancel.addEventListener("click", async () => {
    try {
      show(await api(`/v1/runs/${encodeURIComponent(accepted.run_id)}/cancel`, { method: "POST" }));
    } catch (error) {
      state.report(error);
    }
  });
  poll(async () => show(await api(`/v1/runs/${encodeURIComponent(accepted.run_id)}`)), BACKGROUND_POLL_MS, state.report);
}

/** The bytes of `file` as base64, for a `binary` part. */
async function base64Of(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

/** The message as the API takes it: the text alone, or parts when an image is attached. */
async function composed(text, file) {
  if (!file) return { message: text, shown: [] };
  const data = await base64Of(file);
  const image = h("img", { class: "attachment", src: `data:${file.type};base64,${data}`, alt: file.name });
  const message = [...(text ? [{ type: "text", text }] : []), { type: "binary", media_type: file.type, data }];
  return { message, shown: [image] };
}

async function onSubmit(event) {
  event.preventDefault();
  const text = parts.message.value.trim();
  const file = parts.image.files[0];
  if ((!text && !file) || state.busy) return;
  parts.message.value = "";
  parts.image.value = "";
  parts.attached.textContent = "";
  const agent = parts.agent.value || undefined;
  await busyWhile(async () => {
    const { message, shown } = await composed(text, file);
    item("user", h("span", { class: "role" }, "you"), h("div", { class: "answer" }, text, ...shown));
    await (parts.background.checked ? sendInBackground(message, agent) : sendStreamed(message, agent));
  });
}

/** Run `work` with the composer held (one run at a time); a failure becomes a line in the transcript. */
async function busyWhile(work) {
  state.busy = true;
  parts.send.disabled = true;
  try {
    await work();
  } catch (error) {
    item("error", errorLine(error));
  } finally {
    state.busy = false;
    parts.send.disabled = false;
    parts.message.focus();
  }
}

/** Forget the transcript and session: another key may belong to another user. */
export function resetPlayground() {
  root = null;
  state.sessionId = null;
}

export function playground(container, _match, ctx) {
  state.report = ctx.report;
  const fresh = root === null;
  if (fresh) root = build();
  container.replaceChildren(root);
  const resumed = sessionStorage.getItem(CONTINUE_KEY); // set by a run's page: "continue this session"
  if (resumed) {
    sessionStorage.removeItem(CONTINUE_KEY);
    newSession();
    useSession(resumed);
    item("note", h("p", { class: "meta" }, "Continuing session ", h("code", null, resumed)));
  }
  if (fresh || !parts.agent.options.length) loadAgents().catch(ctx.report);
  parts.message.focus();
  return null;
}
