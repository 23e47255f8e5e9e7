// A run that waits for decisions on tool calls (`status: waiting_approval`): its pending calls with
// their arguments, Approve / Deny for each call that needs a decision and a result field for each
// call answered from outside. Once every call has its answer, `onDecided({approvals, results})`
// gets the body of POST /v1/runs/{id}/resume (the caller resumes the run in place).

import { h } from "./dom.js";

/** The pending calls of `run` as a form; `onDecided` is called once, with every answer. */
export function pendingCalls(pending, onDecided) {
  const approvals = {};
  const results = {};
  let sent = false;
  const box = h("div", { class: "pending", "data-pending": pending.length });
  const settle = () => {
    const answered = pending.every((call) => call.tool_call_id in approvals || call.tool_call_id in results);
    if (!answered || sent) return;
    sent = true;
    for (const button of box.querySelectorAll("button, input")) button.disabled = true;
    onDecided({ approvals, results });
  };
  for (const call of pending) {
    const state = h("span", { class: "tool-state" }, call.kind === "approval" ? "needs approval" : "needs a result");
    const row = h("div", { class: "tool waiting", "data-tool": call.tool_name, "data-call": call.tool_call_id },
      h("span", { class: "tool-name" }, call.tool_name), h("code", { class: "tool-args" }, JSON.stringify(call.args ?? {})), state);
    const decide = (label, record) => () => {
      record();
      state.textContent = label;
      row.classList.replace("waiting", "decided");
      for (const button of row.querySelectorAll("button, input")) button.disabled = true;
      settle();
    };
    if (call.kind === "approval") {
      row.append(
        h("button", { type: "button", class: "small approve", onclick: decide("approved", () => { approvals[call.tool_call_id] = true; }) }, "Approve"),
        h("button", { type: "button", class: "small danger deny", onclick: decide("denied", () => { approvals[call.tool_call_id] = false; }) }, "Deny"),
      );
    } else {
      const field = h("input", { class: "result", placeholder: "result (JSON or text)", "aria-label": `Result of ${call.tool_name}` });
      const parse = () => {
        try {
          return JSON.parse(field.value);
        } catch {
          return field.value;
        }
      };
      row.append(field, h("button", { type: "button", class: "small", onclick: decide("answered", () => { results[call.tool_call_id] = parse(); }) }, "Send result"));
    }
    box.append(row);
  }
  return box;
}

/** A structured output (anything but text) as indented JSON. */
export function outputBlock(output) {
  return h("pre", { class: "output-json" }, JSON.stringify(output, null, 2));
}
