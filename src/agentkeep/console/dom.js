// DOM building and formatting. Nothing here uses innerHTML: every piece of data the API returns
// becomes a text node or an attribute value, so a message, a tool argument or an error can never
// turn into markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function setProps(el, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.setAttribute("class", value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

function addChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** An HTML element: h("a", {href: "#/runs"}, "Runs"). Strings become text nodes. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  addChildren(el, children);
  return el;
}

/** An SVG element, for the usage chart. */
export function svg(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props);
  addChildren(el, children);
  return el;
}

export const FINAL = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
export const ACTIVE = new Set(["queued", "running", "waiting_approval"]);

export function badge(status) {
  return h("span", { class: `badge status-${status || "unknown"}`, "data-status": status }, status || "unknown");
}

export function runLink(runId, label) {
  return h("a", { href: `#/runs/${encodeURIComponent(runId)}`, class: "mono" }, label || runId);
}

export function usd(value) {
  if (value === null || value === undefined) return "—";
  const n = Number(value);
  if (n === 0) return "$0";
  return `$${n.toFixed(Math.abs(n) < 1 ? 4 : 2)}`;
}

export function ms(value) {
  if (value === null || value === undefined) return "—";
  const n = Number(value);
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60000) return `${(n / 1000).toFixed(1)} s`;
  return `${Math.floor(n / 60000)} m ${Math.round((n % 60000) / 1000)} s`;
}

export function seconds(value) {
  if (value === null || value === undefined) return "—";
  const s = Math.floor(Number(value));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hh} h`;
  if (hh) return `${hh} h ${mm} m`;
  if (mm) return `${mm} m ${s % 60} s`;
  return `${s} s`;
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/** "1 request", "2 requests": a count with its noun, singular for one. */
export function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

export function tokens(usage) {
  if (!usage) return 0;
  return (usage.input_tokens || 0) + (usage.output_tokens || 0);
}

/**
 * Repeat `task` every `intervalMs` until it returns false or is stopped. A failing round is reported,
 * not thrown; a refusal (4xx other than 429) ends the polling, since asking again changes nothing.
 */
export function poll(task, intervalMs, onError) {
  let timer = null;
  let stopped = false;
  const round = async () => {
    timer = null;
    try {
      if ((await task()) === false) stopped = true;
    } catch (error) {
      onError(error);
      if (error.status >= 400 && error.status < 500 && error.status !== 429) stopped = true;
    }
    if (!stopped) timer = setTimeout(round, intervalMs);
  };
  round();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
  };
}
