// A tenant's API keys: list, create and rotate (the new secret is shown once), revoke.
import { api } from "./api.js";
import { byId, el, formatTime, table } from "./dom.js";
import { announce, chosenTenant, page, reportError, tenantPicker } from "./layout.js";

const keysPath = (tenantId) => `/v1/admin/tenants/${encodeURIComponent(tenantId)}/api-keys`;

// The secret exists in this response only: show it where it can be copied, and say so.
function showSecret(created, what) {
  const output = el("input", { id: "new-key", readonly: true, value: created.api_key, autocomplete: "off" });
  const panel = el("section", { class: "card secret", "aria-labelledby": "secret-heading" },
    el("h2", { id: "secret-heading" }, `${what}: copy it now`),
    el("p", {}, "This key is shown only once; the gateway keeps its hash, not the key."),
    el("label", { for: "new-key" }, `Key ${created.key_id}`), output,
    el("button", { type: "button", class: "secondary", onclick: () => panel.remove() }, "I have copied it"));
  byId("new-secret").replaceChildren(panel);
  output.focus();
  output.select();
}

function state(key) {
  if (key.revoked_at) return `revoked ${formatTime(key.revoked_at)}`;
  if (key.replaced_by) return `rotated; works until ${formatTime(key.expires_at)}`;
  return "active";
}

async function rotate(tenantId, key) {
  const grace = Number(byId("grace-seconds").value || 0);
  const rotated = await api(`${keysPath(tenantId)}/${encodeURIComponent(key.key_id)}/rotate`,
    { method: "POST", body: { grace_seconds: grace }, admin: true });
  showSecret(rotated, `New key replacing ${key.key_id}`);
  announce(`Rotated ${key.key_id}; the old key works for ${grace} more seconds.`);
  await listKeys(tenantId, false);
}

async function revoke(tenantId, key) {
  if (!confirm(`Revoke key ${key.key_id}? Every request with it will be refused.`)) return;
  await api(`${keysPath(tenantId)}/${encodeURIComponent(key.key_id)}`, { method: "DELETE", admin: true });
  announce(`Revoked ${key.key_id}.`);
  await listKeys(tenantId);
}

function actions(tenantId, key) {
  if (key.revoked_at || key.replaced_by) return "";
  const label = key.name || key.key_id;
  return el("span", { class: "actions" },
    el("button", { type: "button", "data-rotate": key.key_id, "aria-label": `Rotate ${label}`,
      onclick: () => rotate(tenantId, key).catch(reportError) }, "Rotate"),
    el("button", { type: "button", class: "danger", "aria-label": `Revoke ${label}`,
      onclick: () => revoke(tenantId, key).catch(reportError) }, "Revoke"));
}

async function listKeys(tenantId, clearSecret = true) {
  if (clearSecret) byId("new-secret").replaceChildren();
  const keys = await api(`${keysPath(tenantId)}?limit=100`, { admin: true });
  byId("keys").replaceChildren(table(`Keys of ${tenantId}, newest first`, [
    ["Name", (k) => k.name || "—"],
    ["Key id", (k) => el("code", {}, k.key_id)],
    ["Prefix", (k) => el("code", {}, k.key_prefix)],
    ["Scopes", (k) => k.scopes.join(", ")],
    ["Created", (k) => formatTime(k.created_at)],
    ["Last used", (k) => formatTime(k.last_used_at)],
    ["State", state],
    ["", (k) => actions(tenantId, k)],
  ], keys.items));
}

async function create(event) {
  event.preventDefault();
  const tenantId = chosenTenant();
  const created = await api(keysPath(tenantId),
    { method: "POST", body: { name: byId("key-name").value.trim() }, admin: true });
  await listKeys(tenantId);
  showSecret(created, "New key");
  announce(`Created key ${created.key_id}.`);
}

page(async () => {
  byId("picker").append(tenantPicker(listKeys));
  byId("grace-form").addEventListener("submit", (event) => event.preventDefault());
  byId("create-key").addEventListener("submit", (event) => create(event).catch(reportError));
  await listKeys(chosenTenant());
}, { admin: true });
