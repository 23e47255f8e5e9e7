// Usage and health: spend today and this month against each budget, cost per hour over the last
// 24 h (an inline SVG, nothing to load), active runs, each model's circuit breaker, /health's checks,
// the version and the uptime. Refreshed every few seconds while it is open.

import { api, health } from "./api.js";
import { badge, h, poll, runLink, seconds, svg, usd, when } from "./dom.js";

const REFRESH_MS = 10000;
const BUDGET_NAMES = { user_daily: "Per user, per day", session: "Per session", run: "Per run" };

function card(title, ...children) {
  return h("div", { class: "card" }, h("h2", null, title), ...children);
}

function meter(spent, cap) {
  const bar = h("span", { class: "fill" });
  const share = cap > 0 ? Math.min(1, spent / cap) : 0;
  bar.style.width = `${(100 * share).toFixed(1)}%`;
  return h("div", { class: `meter${share >= 0.9 ? " hot" : ""}`, role: "meter", "aria-valuemin": 0, "aria-valuemax": cap, "aria-valuenow": spent }, bar);
}

function spend(usage) {
  const daily = usage.budgets && usage.budgets.user_daily;
  const today = card("Spent today",
    h("p", { class: "big", id: "spent-today", "data-usd": usage.today.spent_usd }, usd(usage.today.spent_usd)),
    h("p", { class: "muted" }, `${usage.today.date} (UTC) · ${usd(usage.today.held_usd)} held by runs in flight`),
    daily ? [meter(usage.today.spent_usd + usage.today.held_usd, daily.cap_usd), h("p", { class: "muted" }, `of ${usd(daily.cap_usd)} a day · ${usd(daily.remaining_usd)} left`)] : null);
  const month = card("Spent this month",
    h("p", { class: "big", id: "spent-month", "data-usd": usage.month.spent_usd }, usd(usage.month.spent_usd)),
    h("p", { class: "muted" }, `${usage.month.month} (UTC) · user ${usage.user_id}`));
  const rows = Object.entries(usage.budgets || {}).map(([name, b]) =>
    h("tr", null, h("td", null, BUDGET_NAMES[name] || name), h("td", { class: "num" }, usd(b.cap_usd)),
      h("td", { class: "num" }, b.spent_usd === undefined ? "—" : usd(b.spent_usd)),
      h("td", { class: "num" }, b.remaining_usd === undefined ? "—" : usd(b.remaining_usd))));
  const budgets = card("Budgets", rows.length
    ? h("table", { class: "compact" }, h("thead", null, h("tr", null, h("th", null, "Budget"), h("th", { class: "num" }, "Cap"),
      h("th", { class: "num" }, "Spent"), h("th", { class: "num" }, "Left"))), h("tbody", null, ...rows))
    : h("p", { class: "muted" }, "No budget is configured (AGENTKEEP_BUDGET_*_USD)."));
  return [today, month, budgets];
}

/** 24 bars, one per UTC hour, oldest on the left; each bar's <title> gives its figures. The SVG
 * stretches to the card's width (bars only, so nothing is distorted); the labels are plain HTML. */
function hourlyChart(hourly) {
  const height = 100;
  const top = Math.max(...hourly.map((x) => x.cost_usd), 0);
  const chart = svg("svg", {
    viewBox: `0 0 ${hourly.length} ${height}`, preserveAspectRatio: "none", class: "chart", id: "hourly-chart",
    role: "img", "aria-label": "Cost per hour, last 24 hours",
  });
  hourly.forEach((entry, i) => {
    const barHeight = top > 0 ? Math.max(entry.cost_usd > 0 ? 2 : 0, (entry.cost_usd / top) * height) : 0;
    chart.append(svg("rect", { x: i + 0.12, y: height - barHeight, width: 0.76, height: barHeight, class: "bar", "data-cost": entry.cost_usd },
      svg("title", null, `${entry.hour}: ${usd(entry.cost_usd)}, ${entry.runs} runs, ${entry.tokens} tokens`)));
  });
  const labels = hourly.filter((_, i) => i % 6 === 0 || i === hourly.length - 1).map((entry) => h("span", null, `${entry.hour.slice(11, 13)}h`));
  return card("Cost per hour, last 24 h (UTC)",
    h("p", { class: "muted chart-top" }, top > 0 ? `peak ${usd(top)} in an hour` : "No spend in the last 24 hours."),
    chart, h("div", { class: "chart-labels" }, ...labels));
}

function activeRuns(running, stats) {
  const list = running.runs.length
    ? h("ul", { class: "plain" }, ...running.runs.map((run) => h("li", null, badge(run.status), " ", runLink(run.run_id), ` ${run.agent || ""} · since ${when(run.started_at || run.created_at)}`)))
    : h("p", { class: "muted" }, "Nothing running.");
  return card("Active runs", h("p", { class: "big", id: "active-runs" }, String(stats.active_runs ?? running.runs.length)),
    h("p", { class: "muted" }, `in this process · ${stats.total_requests} runs done, ${(100 * (stats.error_rate || 0)).toFixed(1)}% errors, p95 ${Math.round(stats.p95_response_ms || 0)} ms`),
    list);
}

function breakers(stats) {
  const entries = Object.entries(stats.breakers || {});
  return card("Circuit breakers", entries.length
    ? h("ul", { class: "plain", id: "breakers" }, ...entries.map(([model, s]) => h("li", null, h("span", { class: `badge breaker-${s}` }, s), " ", h("code", null, model))))
    : h("p", { class: "muted", id: "breakers" }, "No model called yet by this process."));
}

function healthCard(status) {
  const checks = Object.entries(status.checks || {});
  return card("Health", h("p", null, h("span", { class: `badge health-${status.status}`, id: "health-status" }, status.status)),
    h("dl", { class: "facts" }, h("dt", null, "Version"), h("dd", { id: "version" }, status.version), h("dt", null, "Uptime"),
      h("dd", null, seconds(status.uptime_s)), ...checks.flatMap(([name, value]) => [h("dt", null, name), h("dd", null, String(value))])));
}

export function usageView(container, _match, ctx) {
  const grid = h("div", { class: "grid", id: "usage-grid" }, h("p", { class: "muted" }, "Loading…"));
  const refresh = async () => {
    const [usage, stats, status, running] = await Promise.all([
      api("/v1/usage"), api("/v1/stats"), health(), api("/v1/runs", { params: { status: "running", limit: 20 } }),
    ]);
    grid.replaceChildren(...spend(usage), hourlyChart(usage.hourly || []), activeRuns(running, stats), breakers(stats), healthCard(status));
  };
  let stop = null;
  const button = h("button", { type: "button", class: "ghost", id: "refresh-usage" }, "Refresh");
  button.addEventListener("click", () => refresh().catch(ctx.report));
  container.append(h("section", { class: "usage" }, h("div", { class: "heading" }, h("h1", null, "Usage & health"), button), grid));
  stop = poll(refresh, REFRESH_MS, ctx.report);
  return () => stop();
}
