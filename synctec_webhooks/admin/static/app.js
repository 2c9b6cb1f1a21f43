// The settings page: plain DOM calls against /api/v1, no build step, no dependencies.
// User-supplied text (URLs, descriptions, errors) only ever goes into textContent.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 2000;
let token = null;
let shownAttempts = null; // webhook id whose attempts are on screen

function $(id) { return document.getElementById(id); }

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function when(ms) { return ms ? new Date(ms).toLocaleString() : ""; }

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(API + path, opts);
  if (resp.status === 401) {
    sessionStorage.removeItem("token");
    showLogin("That token was refused; enter the admin token.");
    throw new Error("unauthorized");
  }
  const data = resp.status === 204 ? null : await resp.json();
  if (!resp.ok) throw new Error(data && data.error ? data.error.message : "HTTP " + resp.status);
  return data;
}

function notify(text) {
  const n = $("notice");
  n.textContent = text;
  n.hidden = !text;
}

function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  if (message) notify(message);
}

// --- webhooks --------------------------------------------------------------------------

function lastResult(a) {
  if (!a) return el("span", { className: "muted", textContent: "no attempts yet" });
  const good = a.result === "delivered";
  const what = a.status ? "HTTP " + a.status : a.error || a.outcome;
  return el("span", { className: good ? "ok" : "bad", textContent: what },
    el("br"), el("span", { className: "muted small", textContent: when(a.at) }));
}

function webhookRow(w) {
  const state = el("span", { className: "pill " + w.state, textContent: w.state });
  const stateCell = el("td", {}, state);
  if (w.disabled_reason) stateCell.append(el("div", { className: "muted small", textContent: w.disabled_reason }));
  const actions = el("td", {},
    el("button", { textContent: "Send test", className: "send-test", onclick: () => sendTest(w.id) }),
    el("button", { textContent: "Attempts", onclick: () => showAttempts(w.id, w.url) }),
    el("button", {
      textContent: w.enabled ? "Disable" : "Enable",
      onclick: () => act(api("PATCH", "/webhooks/" + w.id, { enabled: !w.enabled }),
        w.enabled ? "Disabled." : "Enabled."),
    }),
    el("button", {
      textContent: "Delete", className: "danger",
      onclick: () => confirm("Delete the webhook for " + w.url + "?") &&
        act(api("DELETE", "/webhooks/" + w.id), "Deleted."),
    }));
  const row = el("tr", {},
    el("td", { className: "url", textContent: w.url, title: w.description || "" }),
    el("td", { textContent: w.events.join(", ") }),
    stateCell,
    el("td", { className: "last-result" }, lastResult(w.last_attempt)),
    actions);
  row.dataset.id = w.id;
  return row;
}

async function loadWebhooks() {
  const { webhooks } = await api("GET", "/webhooks");
  $("webhooks").tBodies[0].replaceChildren(...webhooks.map(webhookRow));
  $("no-webhooks").hidden = webhooks.length > 0;
}

async function act(promise, message) {
  try {
    await promise;
    notify(message);
  } catch (err) {
    notify(err.message);
  }
  await refresh();
}

async function sendTest(id) {
  try {
    const sent = await api("POST", "/webhooks/" + id + "/test", {});
    notify("Test " + sent.event_type + " event " + sent.event_id + " queued.");
    await showAttempts(id);
  } catch (err) {
    notify(err.message);
  }
}

async function addWebhook(event) {
  event.preventDefault();
  const events = [...document.querySelectorAll("#add-events input:checked")].map((c) => c.value);
  const description = $("add-description").value.trim();
  const body = { url: $("add-url").value.trim(), events, description: description || null };
  const error = $("add-error");
  error.hidden = true;
  try {
    const created = await api("POST", "/webhooks", body);
    $("secret").textContent = created.secret;
    $("secret-box").hidden = false;
    $("add-form").reset();
    notify("Webhook added.");
    await refresh();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

// --- attempts and dead letters --------------------------------------------------------

async function showAttempts(id, url) {
  shownAttempts = id;
  if (url) $("attempts-for").textContent = "for " + url;
  $("attempts-section").hidden = false;
  await loadAttempts();
}

async function loadAttempts() {
  if (!shownAttempts) return;
  let attempts;
  try {
    ({ attempts } = await api("GET", "/webhooks/" + shownAttempts + "/attempts?limit=20"));
  } catch (err) {
    shownAttempts = null;
    $("attempts-section").hidden = true;
    return;
  }
  $("attempts").tBodies[0].replaceChildren(...attempts.map((a) => el("tr", {},
    el("td", { textContent: when(a.at) }),
    el("td", { textContent: a.event_type + " " + a.event_id }),
    el("td", { textContent: String(a.attempt) }),
    el("td", { className: a.result === "delivered" ? "ok" : "bad",
      textContent: (a.status ? "HTTP " + a.status : a.error || a.outcome) + " → " + a.result }),
    el("td", { textContent: Math.round(a.latency_ms) + " ms" }))));
  $("no-attempts").hidden = attempts.length > 0;
}

async function loadDeadLetters() {
  const { dead_letters: found } = await api("GET", "/dead-letters?limit=50");
  $("dead-letters").tBodies[0].replaceChildren(...found.map((d) => {
    const replay = d.replayed_at
      ? el("span", { className: "muted", textContent: "replayed " + when(d.replayed_at) })
      : d.replayable
        ? el("button", { textContent: "Replay",
          onclick: () => act(api("POST", "/dead-letters/replay", { dead_letter_ids: [d.dead_letter_id] }),
            "Replayed.") })
        : el("span", { className: "muted", textContent: "not replayable" });
    return el("tr", {},
      el("td", { textContent: when(d.failed_at) }),
      el("td", { textContent: d.webhook_id || "" }),
      el("td", { textContent: (d.event_type || "") + " " + (d.event_id || "") }),
      el("td", { title: d.detail, textContent: d.reason }),
      el("td", {}, replay));
  }));
  $("no-dead-letters").hidden = found.length > 0;
}

async function refresh() {
  try {
    await Promise.all([loadWebhooks(), loadAttempts(), loadDeadLetters()]);
  } catch (err) {
    if (err.message !== "unauthorized") notify(err.message);
  }
}

// --- start ----------------------------------------------------------------------------

async function start() {
  const spec = await api("GET", "/openapi.json");
  const types = spec.paths["/webhooks"].post.requestBody.content["application/json"]
    .schema.properties.events.items.enum;
  $("add-events").replaceChildren(el("legend", { textContent: "Events" }), ...types.map((t) =>
    el("label", {}, el("input", { type: "checkbox", value: t, name: "events" }), " " + (t === "*" ? "all events (*)" : t))));
  $("login").hidden = true;
  $("app").hidden = false;
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  // A token in the fragment (#token=...) never reaches a server log; keep it for this tab
  // and take it out of the address bar.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("token", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  token = sessionStorage.getItem("token");
  $("add-form").addEventListener("submit", addWebhook);
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("token", token);
    notify("");
    start().catch((err) => notify(err.message));
  });
  if (token) start().catch((err) => notify(err.message));
  else showLogin();
});
