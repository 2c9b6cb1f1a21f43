// The settings page: plain DOM calls against /api/v1, no build step, no dependencies.
// User-supplied text (URLs, descriptions, errors) only ever goes into textContent.
//
// Who is looking decides what it shows (GET /me): a merchant's portal link or API key
// sees its own account, and nothing to change with a read-only link; the operator token
// picks an account. The API enforces all of it; the page only leaves out what would be
// refused.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 2000;
const DEFAULT_ACCOUNT = "default";
// If the OpenAPI document cannot be read, the add form still offers the event types.
const EVENT_TYPES = ["product.synced", "sync.failed", "inventory.updated", "collection.synced", "*"];
const NEW_LINK = "Open Settings → Webhooks again from your StoreLink dashboard for a new one.";
const LINK_PROBLEMS = {
  link_expired: ["This link has expired", "This link has expired. " + NEW_LINK],
  link_revoked: ["This link was revoked", "This link has been revoked. " + NEW_LINK],
  unauthorized: ["This link is not valid", "This link is not valid. " + NEW_LINK],
};
const ACTOR_KINDS = {
  operator: "StoreLink operator",
  api_key: "API key",
  portal: "Settings page",
  cli: "Command line",
  system: "StoreLink (automatic)",
};
const ACTIONS = {
  "account.created": "Account created",
  "account.updated": "Account changed",
  "api_key.created": "API key created",
  "api_key.revoked": "API key revoked",
  "portal_link.issued": "Settings link issued",
  "portal_links.revoked": "Settings links revoked",
  "webhook.created": "Webhook added",
  "webhook.updated": "Webhook changed",
  "webhook.enabled": "Webhook enabled",
  "webhook.disabled": "Webhook disabled",
  "webhook.deleted": "Webhook deleted",
  "webhook.secret_rotated": "Signing secret rotated",
  "webhook.test_sent": "Test event sent",
  "dead_letters.replayed": "Dead letters replayed",
};

let token = null;
let me = null; // GET /me: kind, account_id, scope, credential_id, expires_at
let account = null; // the account on screen
let shownAttempts = null; // webhook id whose attempts are on screen
let timer = null;

function $(id) { return document.getElementById(id); }

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function when(ms) { return ms ? new Date(ms).toLocaleString() : ""; }

function isOperator() { return me !== null && me.kind === "operator"; }

function canChange() { return me !== null && me.scope !== "read"; }

// A portal link is a JWT; an operator token or API key is not.
function isLink(t) { return typeof t === "string" && t.startsWith("eyJ") && t.split(".").length === 3; }

// The operator names the account on every list; an account credential is its account.
function scoped(path) {
  if (!isOperator()) return path;
  return path + (path.includes("?") ? "&" : "?") + "account_id=" + encodeURIComponent(account);
}

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(API + path, opts);
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (resp.status === 401) {
    refused(data && data.error ? data.error.code : "unauthorized");
    throw new Error("unauthorized");
  }
  if (!resp.ok) throw new Error(data && data.error ? data.error.message : "HTTP " + resp.status);
  return data;
}

function notify(text) {
  const n = $("notice");
  n.textContent = text;
  n.hidden = !text;
}

function stop() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

// A credential that no longer opens the API: a link says why and where to get a new
// one (merchants have no token to type); anything else asks for the admin token.
function refused(code) {
  stop();
  sessionStorage.removeItem("token");
  $("app").hidden = true;
  $("account-bar").hidden = true;
  const problem = LINK_PROBLEMS[code] || (isLink(token) ? LINK_PROBLEMS.unauthorized : null);
  if (problem) {
    $("login").hidden = true;
    $("link-problem-title").textContent = problem[0];
    $("link-problem-text").textContent = problem[1];
    $("link-problem").hidden = false;
  } else {
    showLogin("That token was refused; enter the admin token.");
  }
}

function showLogin(message) {
  $("app").hidden = true;
  $("link-problem").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-error").hidden = !message;
}

// --- who is looking -----------------------------------------------------------------

async function loadAccounts() {
  const ids = [DEFAULT_ACCOUNT];
  const names = {};
  let after = null;
  do {
    const page = await api("GET", "/accounts" + (after ? "?after=" + encodeURIComponent(after) : ""));
    for (const a of page.accounts) {
      if (!ids.includes(a.id)) ids.push(a.id);
      names[a.id] = a.name;
    }
    after = page.next_after;
  } while (after);
  const picker = $("account-picker");
  picker.replaceChildren(...ids.map((id) =>
    el("option", { value: id, textContent: names[id] ? id + " · " + names[id] : id })));
  const kept = sessionStorage.getItem("account");
  account = ids.includes(kept) ? kept : DEFAULT_ACCOUNT;
  picker.value = account;
}

function showWho() {
  $("account-bar").hidden = false;
  $("account-label").hidden = isOperator();
  $("account-picker-label").hidden = !isOperator();
  $("account-id").textContent = account;
  $("scope").hidden = canChange();
  $("scope").textContent = "read only";
  $("expires").hidden = !me.expires_at;
  if (me.expires_at) $("expires").textContent = "link valid until " + when(me.expires_at * 1000);
  $("add-section").hidden = !canChange();
}

async function pickAccount() {
  account = $("account-picker").value;
  sessionStorage.setItem("account", account);
  $("account-id").textContent = account;
  shownAttempts = null;
  $("attempts-section").hidden = true;
  $("secret-box").hidden = true;
  notify("");
  await refresh();
}

// --- webhooks --------------------------------------------------------------------------

function lastResult(a) {
  if (!a) return el("span", { className: "muted", textContent: "no attempts yet" });
  const good = a.result === "delivered";
  const what = a.status ? "HTTP " + a.status : a.error || a.outcome;
  return el("span", { className: good ? "ok" : "bad", textContent: what },
    el("br"), el("span", { className: "muted small", textContent: when(a.at) }));
}

function changeButtons(w) {
  return [
    el("button", { textContent: "Send test", className: "send-test", onclick: () => sendTest(w.id) }),
    el("button", { textContent: "Rotate secret", className: "rotate", onclick: () => rotate(w) }),
    el("button", {
      textContent: w.enabled ? "Disable" : "Enable",
      className: "toggle",
      onclick: () => act(api("PATCH", "/webhooks/" + w.id, { enabled: !w.enabled }),
        w.enabled ? "Disabled." : "Enabled."),
    }),
    el("button", {
      textContent: "Delete", className: "danger",
      onclick: () => confirm("Delete the webhook for " + w.url + "?") &&
        act(api("DELETE", "/webhooks/" + w.id), "Deleted."),
    }),
  ];
}

function webhookRow(w) {
  const state = el("span", { className: "pill " + w.state, textContent: w.state });
  const stateCell = el("td", {}, state);
  if (w.disabled_reason) stateCell.append(el("div", { className: "muted small", textContent: w.disabled_reason }));
  const actions = el("td", {},
    el("button", { textContent: "Attempts", onclick: () => showAttempts(w.id, w.url) }),
    ...(canChange() ? changeButtons(w) : []));
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
  const { webhooks } = await api("GET", scoped("/webhooks"));
  $("webhooks").tBodies[0].replaceChildren(...webhooks.map(webhookRow));
  $("no-webhooks").textContent = canChange() ? "No webhooks yet: add one below." : "No webhooks yet.";
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

function showSecret(secret, url) {
  $("secret").textContent = secret;
  $("secret-for").textContent = url ? "for " + url : "";
  $("secret-box").hidden = false;
}

async function rotate(w) {
  if (!confirm("Make a new signing secret for " + w.url + "? The old one keeps signing for a while, so your endpoint can switch.")) return;
  try {
    const rotated = await api("POST", "/webhooks/" + w.id + "/rotate-secret");
    showSecret(rotated.secret, w.url);
    notify("New secret made; the old one keeps signing until " + when(rotated.rotation_ends_at) + ".");
  } catch (err) {
    notify(err.message);
  }
}

async function addWebhook(event) {
  event.preventDefault();
  const events = [...document.querySelectorAll("#add-events input:checked")].map((c) => c.value);
  const description = $("add-description").value.trim();
  const body = { url: $("add-url").value.trim(), events, description: description || null };
  if (isOperator()) body.account_id = account;
  const error = $("add-error");
  error.hidden = true;
  try {
    const created = await api("POST", "/webhooks", body);
    showSecret(created.secret, created.url);
    $("add-form").reset();
    notify("Webhook added.");
    await refresh();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

// --- attempts, dead letters, activity -------------------------------------------------

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
    if (err.message === "unauthorized") throw err;
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

function replayCell(d) {
  if (d.replayed_at) return el("span", { className: "muted", textContent: "replayed " + when(d.replayed_at) });
  if (!d.replayable) return el("span", { className: "muted", textContent: "not replayable" });
  if (!canChange()) return el("span", { className: "muted", textContent: "not replayed" });
  return el("button", { textContent: "Replay",
    onclick: () => act(api("POST", "/dead-letters/replay", { dead_letter_ids: [d.dead_letter_id] }),
      "Replayed.") });
}

async function loadDeadLetters() {
  const { dead_letters: found } = await api("GET", scoped("/dead-letters?limit=50"));
  $("dead-letters").tBodies[0].replaceChildren(...found.map((d) => {
    const row = el("tr", {},
      el("td", { textContent: when(d.failed_at) }),
      el("td", { textContent: d.webhook_id || "" }),
      el("td", { textContent: (d.event_type || "") + " " + (d.event_id || "") }),
      el("td", { title: d.detail, textContent: d.reason }),
      el("td", {}, replayCell(d)));
    row.dataset.id = d.dead_letter_id;
    return row;
  }));
  $("no-dead-letters").hidden = found.length > 0;
}

function actor(a) {
  const who = el("span", { textContent: ACTOR_KINDS[a.kind] || a.kind });
  if (a.id && a.id !== a.kind) who.append(el("br"), el("span", { className: "muted small", textContent: a.id }));
  return who;
}

async function loadActivity() {
  const data = await api("GET", scoped("/audit?limit=50"));
  const entries = data.entries || data.audit || [];
  $("activity").tBodies[0].replaceChildren(...entries.map((e) => el("tr", {},
    el("td", { textContent: e.at ? new Date(e.at).toLocaleString() : "" }),
    el("td", {}, actor(e.actor)),
    el("td", { textContent: ACTIONS[e.action] || e.action }),
    el("td", { textContent: e.target_id || "" }),
    el("td", { className: "detail", textContent: e.detail || "" }))));
  $("no-activity").hidden = entries.length > 0;
}

async function refresh() {
  try {
    await Promise.all([loadWebhooks(), loadAttempts(), loadDeadLetters(), loadActivity()]);
  } catch (err) {
    if (err.message !== "unauthorized") notify(err.message);
  }
}

// --- start ----------------------------------------------------------------------------

async function eventTypes() {
  try {
    const spec = await api("GET", "/openapi.json");
    return spec.paths["/webhooks"].post.requestBody.content["application/json"]
      .schema.properties.events.items.enum;
  } catch (err) {
    if (err.message === "unauthorized") throw err;
    return EVENT_TYPES;
  }
}

async function start() {
  me = await api("GET", "/me");
  if (isOperator()) await loadAccounts();
  else account = me.account_id;
  showWho();
  if (canChange()) {
    const types = await eventTypes();
    $("add-events").replaceChildren(el("legend", { textContent: "Events" }), ...types.map((t) =>
      el("label", {}, el("input", { type: "checkbox", value: t, name: "events" }), " " + (t === "*" ? "all events (*)" : t))));
  }
  $("login").hidden = true;
  $("link-problem").hidden = true;
  $("app").hidden = false;
  await refresh();
  stop();
  timer = setInterval(refresh, REFRESH_MS);
}

function begin() {
  start().catch((err) => {
    if (err.message !== "unauthorized") showLogin(err.message);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  // A token in the fragment (#token=...) never reaches a server log; keep it for this tab
  // and take it out of the address bar. A new link replaces the tab's earlier one.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("token", fromHash);
    sessionStorage.removeItem("account");
    history.replaceState(null, "", location.pathname);
  }
  token = sessionStorage.getItem("token");
  $("add-form").addEventListener("submit", addWebhook);
  $("account-picker").addEventListener("change", () => { pickAccount(); });
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("token", token);
    sessionStorage.removeItem("account");
    begin();
  });
  if (token) begin();
  else showLogin();
});
