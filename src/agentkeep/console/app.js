// The console's shell: hash routes, the API-key form, and one banner for errors. Each view is a
// function render(container, match) that may return a stop() for its timers.

import { api, auth } from "./api.js";
import { playground, resetPlayground } from "./playground.js";
import { runPage, runsList } from "./runs.js";
import { usageView } from "./usage.js";

const view = document.getElementById("view");
const banner = document.getElementById("banner");
const login = document.getElementById("login");
const loginForm = document.getElementById("login-form");
const loginError = document.getElementById("login-error");
const forgetKey = document.getElementById("forget-key");

const routes = [
  { pattern: /^#\/runs\/([^/?]+)$/, nav: "runs", render: runPage },
  { pattern: /^#\/runs(?:\?(.*))?$/, nav: "runs", render: runsList },
  { pattern: /^#\/usage$/, nav: "usage", render: usageView },
  { pattern: /^(?:#\/?(?:playground)?)?$/, nav: "playground", render: playground },
];

let stopView = null;

/** Show an error in the banner; the console never throws into the browser's console. */
export function report(error) {
  const type = error && error.type ? `${error.type}: ` : "";
  banner.textContent = `${type}${(error && error.message) || String(error)}`;
  banner.hidden = false;
}

function clearBanner() {
  banner.hidden = true;
  banner.textContent = "";
}

function route() {
  if (stopView) stopView();
  stopView = null;
  clearBanner();
  if (auth.required && !auth.key()) {
    showLogin();
    return;
  }
  const hash = window.location.hash;
  const found = routes.map((r) => ({ r, match: hash.match(r.pattern) })).find((x) => x.match);
  if (!found) {
    window.location.hash = "#/playground";
    return;
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === found.r.nav);
  }
  view.replaceChildren();
  try {
    stopView = found.r.render(view, found.match, { report }) || null;
  } catch (error) {
    report(error);
  }
}

function showLogin(message) {
  if (stopView) stopView();
  stopView = null;
  view.replaceChildren();
  resetPlayground();
  login.hidden = false;
  forgetKey.hidden = true;
  loginError.hidden = !message;
  loginError.textContent = message || "";
  document.getElementById("api-key").focus();
}

loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = new FormData(loginForm).get("key").trim();
  if (!key) return;
  auth.save(key);
  try {
    await api("/v1/agents"); // the cheapest call that proves the key
  } catch (error) {
    if (error.status !== 401) {
      loginError.textContent = error.message;
      loginError.hidden = false;
    }
    return;
  }
  loginForm.reset();
  login.hidden = true;
  forgetKey.hidden = false;
  route();
});

forgetKey.addEventListener("click", () => {
  auth.forget();
  showLogin();
});

auth.onKeyRefused((message) => showLogin(auth.required ? message : null));
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  report(event.reason);
});
forgetKey.hidden = !(auth.required && auth.key());
route();
