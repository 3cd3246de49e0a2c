// A tenant's connectors and how their sync stands (never their secrets: the API does not return them).
import { api } from "./api.js";
import { byId, el, formatTime, table } from "./dom.js";
import { chosenTenant, page, tenantPicker } from "./layout.js";

async function load(tenantId) {
  const connectors = await api(`/v1/admin/tenants/${encodeURIComponent(tenantId)}/connectors`, { admin: true });
  byId("connectors").replaceChildren(connectors.items.length ? table(`Connectors of ${tenantId}`, [
    ["Name", (c) => c.name],
    ["Provider", (c) => c.provider],
    ["Status", (c) => c.status],
    ["Last sync", (c) => formatTime(c.last_sync_at)],
    ["Last notification", (c) => formatTime(c.last_notification_at)],
    ["Items synced", (c) => String(c.items_synced)],
    ["Errors", (c) => c.last_error ? `${c.error_count}: ${c.last_error}` : String(c.error_count)],
  ], connectors.items) : el("p", {}, `${tenantId} has no connectors.`));
}

page(async () => {
  byId("picker").append(tenantPicker(load));
  await load(chosenTenant());
}, { admin: true });
