// Sign in: check the key against the API before keeping it, so a typo is reported here and not on every page.
import { api, credentials } from "./api.js";
import { byId } from "./dom.js";

const status = byId("status");

async function signIn(event) {
  event.preventDefault();
  const apiKey = byId("api-key").value.trim();
  const adminToken = byId("admin-token-input").value.trim();
  if (!apiKey && !adminToken) {
    status.textContent = "Enter an API key or an admin token.";
    return;
  }
  credentials.clear();
  credentials.setApiKey(apiKey);
  credentials.setAdminToken(adminToken);
  try {
    if (apiKey) await api("/v1/documents?limit=1");
    if (adminToken) await api("/v1/admin/dlq", { admin: true });
  } catch (error) {
    credentials.clear();
    status.textContent = `Sign-in refused: ${error.message}`;
    byId(apiKey ? "api-key" : "admin-token-input").focus();
    return;
  }
  location.assign(apiKey ? "documents.html" : "admin-tenants.html");
}

byId("sign-in").addEventListener("submit", signIn);
if (credentials.apiKey()) status.textContent = "You are signed in; signing in again replaces the key.";
byId("api-key").focus();
