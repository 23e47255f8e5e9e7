// Runs: the list (GET /v1/runs, filtered) and a run's page (GET /v1/runs/{id} and its /steps):
// the timeline of model requests and tool calls with their latencies, the messages, the output
// (a structured one as JSON), the error, a cancel button while a background run is still queued or
// running, and the calls a waiting run needs decided, with Approve / Deny (it then resumes).

import { api } from "./api.js";
import { outputBlock, pendingCalls } from "./approvals.js";
import { CONTINUE_KEY } from "./playground.js";
import { ACTIVE, badge, h, ms, poll, runLink, tokens, usd, when } from "./dom.js";
import { sessionFiles } from "./files.js";

const STATUSES = ["queued", "running", "waiting_approval", "succeeded", "failed", "cancelled", "interrupted"];
const FILTERS = ["status", "agent", "user_id", "session_id"];
const RUN_POLL_MS = 1500;
const summaries = new Map(); // run_id → the list's summary: tells an admin's run page whose run it is

function runRow(run) {
  const open = () => {
    window.location.hash = `#/runs/${encodeURIComponent(run.run_id)}`;
  };
  return h(
    "tr",
    { class: "run-row", "data-run-id": run.run_id, onclick: open },
    h("td", null, badge(run.status), h("div", { class: "sub" }, runLink(run.run_id))),
    h("td", null, run.agent || "—"),
    h("td", { class: "col-user" }, run.user_id || "—"),
    h("td", { class: "num" }, ms(run.duration_ms)),
    h("td", { class: "num col-tokens" }, String(tokens(run.usage))),
    h("td", { class: "num" }, usd(run.cost_usd)),
    h("td", { class: "col-started" }, when(run.started_at || run.created_at)),
  );
}

function filterForm(params, agents) {
  const select = (name, label, values) =>
    h("label", null, label, h("select", { name }, h("option", { value: "" }, "any"),
      ...values.map((v) => h("option", { value: v, selected: params.get(name) === v }, v))));
  const text = (name, label, placeholder) =>
    h("label", null, label, h("input", { name, value: params.get(name) || "", placeholder, autocomplete: "off" }));
  const agentSelect = select("agent", "Agent", []);
  const form = h("form", { class: "filters", id: "run-filters" },
    select("status", "Status", STATUSES), agentSelect,
    text("user_id", "User", "admin keys: any user"), text("session_id", "Session", "session id"),
    h("button", { type: "submit" }, "Apply"));
  agents.then((list) => {
    const field = agentSelect.querySelector("select");
    for (const agent of list) field.append(h("option", { value: agent.name, selected: params.get("agent") === agent.name }, agent.name));
  }, () => {});
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (String(value).trim()) next.set(name, String(value).trim());
    const query = next.toString();
    const hash = query ? `#/runs?${query}` : "#/runs";
    if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else window.location.hash = hash;
  });
  return form;
}

export function runsList(container, match, ctx) {
  const params = new URLSearchParams(match[1] || "");
  const body = h("tbody", { id: "runs-body" });
  const empty = h("p", { class: "muted", hidden: true }, "No runs match.");
  const more = h("button", { type: "button", class: "ghost", hidden: true }, "Load more");
  const agents = api("/v1/agents").then((r) => r.agents);
  let cursor = null;
  const load = async (reset) => {
    const query = { limit: 50, before: reset ? null : cursor };
    for (const name of FILTERS) query[name] = params.get(name);
    const page = await api("/v1/runs", { params: query });
    if (summaries.size > 1000) summaries.clear();
    for (const run of page.runs) summaries.set(run.run_id, run);
    if (reset) body.replaceChildren();
    body.append(...page.runs.map(runRow));
    cursor = page.next;
    more.hidden = !cursor;
    empty.hidden = body.children.length > 0;
  };
  more.addEventListener("click", () => load(false).catch(ctx.report));
  container.append(h("section", { class: "runs" },
    h("div", { class: "heading" }, h("h1", null, "Runs"),
      h("button", { type: "button", class: "ghost", id: "refresh-runs", onclick: () => load(true).catch(ctx.report) }, "Refresh")),
    filterForm(params, agents),
    h("div", { class: "table-wrap" }, h("table", { class: "runs-table" },
      h("thead", null, h("tr", null, h("th", null, "Status"), h("th", null, "Agent"), h("th", { class: "col-user" }, "User"),
        h("th", { class: "num" }, "Duration"), h("th", { class: "num col-tokens" }, "Tokens"), h("th", { class: "num" }, "Cost"),
        h("th", { class: "col-started" }, "Started"))),
      body)),
    empty, more));
  load(true).catch(ctx.report);
  return null;
}

function fact(label, value) {
  return [h("dt", null, label), h("dd", null, value)];
}

function facts(run) {
  const usage = run.usage || {};
  return h("dl", { class: "facts" },
    fact("Agent", run.agent || "—"),
    run.user_id ? fact("User", run.user_id) : null,
    fact("Session", [h("code", null, run.session_id), " ",
      h("a", { href: "#/playground", "data-session": run.session_id, title: "Send the next message in this session" }, "continue in the playground")]),
    fact("Created", when(run.created_at)),
    fact("Started", when(run.started_at)),
    fact("Finished", when(run.finished_at)),
    fact("Duration", ms(run.duration_ms)),
    fact("Model requests", String(usage.requests ?? 0)),
    fact("Tokens", `${usage.input_tokens ?? 0} in · ${usage.output_tokens ?? 0} out`),
    fact("Tool calls", String(usage.tool_calls ?? 0)),
    fact("Cost", usd(run.cost_usd)));
}

/** Each step as a bar on one shared time axis, from the first step's start to the last one's end. */
function timeline(steps) {
  if (!steps.length) return h("p", { class: "muted" }, "No steps recorded (yet).");
  const start = Math.min(...steps.map((s) => s.started_at));
  const end = Math.max(...steps.map((s) => s.started_at + s.duration_ms / 1000));
  const span = Math.max(end - start, 0.001);
  return h("ol", { class: "timeline", id: "timeline" }, ...steps.map((step) => {
    const bar = h("span", { class: "bar" });
    bar.style.left = `${(100 * (step.started_at - start)) / span}%`;
    bar.style.width = `${Math.max(0.8, (100 * step.duration_ms) / 1000 / span)}%`;
    const tokensText = step.input_tokens !== undefined && step.input_tokens !== null
      ? `${step.input_tokens} → ${step.output_tokens ?? 0} tokens` : "";
    return h("li", { class: `step ${step.kind} outcome-${step.outcome}`, "data-kind": step.kind },
      h("span", { class: "kind" }, step.kind === "tool_call" ? "tool" : "model"),
      h("span", { class: "name" }, step.name),
      h("span", { class: "track" }, bar),
      h("span", { class: "dur num" }, ms(step.duration_ms)),
      h("span", { class: "step-extra" }, step.error ? step.error : tokensText));
  }));
}

function messages(list) {
  if (!list.length) return h("p", { class: "muted" }, "No messages.");
  return h("ol", { class: "messages" }, ...list.map((m) =>
    h("li", { class: `message role-${m.role}` }, h("span", { class: "role" }, m.role),
      m.content ? h("div", { class: "content" }, m.content) : null,
      ...(m.tool_calls || []).map((call) =>
        h("div", { class: "tool done" }, h("span", { class: "tool-name" }, call.name), h("code", { class: "tool-args" }, JSON.stringify(call.args ?? {})))))));
}

export function runPage(container, match, ctx) {
  const runId = decodeURIComponent(match[1]);
  const path = `/v1/runs/${encodeURIComponent(runId)}`;
  const head = h("div", { class: "heading" });
  const details = h("div", { class: "run-details" });
  const timelineBox = h("div");
  const messagesBox = h("div");
  const filesBox = h("div", { class: "files" });
  container.append(h("section", { class: "run" }, h("a", { href: "#/runs", class: "back" }, "← Runs"), head, details,
    h("h2", null, "Timeline"), timelineBox, h("h2", null, "Messages"), messagesBox, filesBox));
  let stop = null;
  let files = null; // the session's files, loaded once the run's owner is known, again when it finishes
  let wait = null; // the pending calls on screen, kept across polls so a half-made decision stays
  const pendingBox = (run) => {
    const key = run.status === "waiting_approval" ? (run.pending || []).map((p) => p.tool_call_id).join(" ") : null;
    if (key !== (wait && wait.key)) {
      wait = key && {
        key,
        box: h("div", { class: "output", id: "run-pending" }, h("h2", null, "Waiting for a decision"),
          pendingCalls(run.pending, async (decisions) => {
            try {
              await api(`${path}/resume`, { method: "POST", body: decisions });
              const [fresh, steps] = await Promise.all([load(), api(`${path}/steps`)]);
              render(fresh, steps);
            } catch (error) {
              ctx.report(error);
            }
          })),
      };
    }
    return wait && wait.box;
  };
  const render = (run, steps) => {
    const cancel = h("button", { type: "button", class: "danger", id: "cancel-run", hidden: !ACTIVE.has(run.status) || run.background === false }, "Cancel run");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        render(await api(`${path}/cancel`, { method: "POST" }), null);
      } catch (error) {
        cancel.disabled = false;
        ctx.report(error);
      }
    });
    head.replaceChildren(h("h1", null, "Run ", h("code", { class: "mono" }, runId)), h("span", { id: "run-status" }, badge(run.status)), cancel);
    details.replaceChildren(h("div", null, facts(run),
      run.error ? h("div", { class: "error-box", id: "run-error" }, h("strong", null, run.error.type), " ", run.error.message) : null,
      pendingBox(run),
      run.output === null || run.output === undefined || run.output === "" ? null
        : h("div", { class: "output" }, h("h2", null, "Output"),
          typeof run.output === "string" ? h("div", { class: "content" }, run.output) : outputBlock(run.output))));
    const session = details.querySelector("[data-session]");
    if (session && run.foreign) session.remove();
    else if (session) session.addEventListener("click", () => sessionStorage.setItem(CONTINUE_KEY, run.session_id));
    if (steps) {
      timelineBox.replaceChildren(timeline(steps.steps || []));
      messagesBox.replaceChildren(messages(steps.messages || []));
    }
    if (!files) {
      files = sessionFiles(run.session_id, run.foreign ? run.owner : null, ctx.report);
      filesBox.replaceChildren(files.element);
    } else if (!ACTIVE.has(run.status) && files.active) {
      files.load();
    }
    files.active = ACTIVE.has(run.status);
    return ACTIVE.has(run.status);
  };
  // An admin may open another user's run: shown and cancellable, but its session is that user's,
  // so there is nothing for the admin to continue.
  const me = api("/v1/usage").then((u) => u.user_id, () => null);
  const load = async () => {
    const [run, caller] = await Promise.all([api(path), me]);
    const owner = summaries.get(runId)?.user_id;
    return { ...run, owner, foreign: Boolean(owner && caller && owner !== caller) };
  };
  stop = poll(async () => {
    const [run, steps] = await Promise.all([load(), api(`${path}/steps`)]);
    return render(run, steps);
  }, RUN_POLL_MS, ctx.report);
  return () => stop();
}
