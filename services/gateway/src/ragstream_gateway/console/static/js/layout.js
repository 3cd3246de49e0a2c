// What every signed-in page shares: the navigation, sign-out, the status line (aria-live) and the key checks.
import { credentials } from "./api.js";
import { byId, el } from "./dom.js";

const PAGES = [
  ["documents.html", "Documents"],
  ["chat.html", "Chat"],
  ["admin-tenants.html", "Tenants"],
  ["admin-keys.html", "Keys"],
  ["admin-audit.html", "Audit"],
  ["admin-connectors.html", "Connectors"],
  ["admin-dlq.html", "DLQ"],
  ["admin-usage.html", "Usage"],
  ["admin-health.html", "Health"],
];

function navigation() {
  const here = location.pathname.split("/").pop();
  const links = PAGES.map(([href, label]) =>
    el("li", {}, el("a", { href, "aria-current": href === here ? "page" : null }, label)));
  const signOut = el("button", { type: "button", class: "secondary", id: "sign-out", onclick: signOutNow }, "Sign out");
  return el("nav", { "aria-label": "Console" }, el("ul", {}, links), signOut);
}

export function signOutNow() {
  credentials.clear();
  location.assign("index.html");
}

// Announce progress and failures to screen readers and sighted users alike.
export function announce(message, kind = "info") {
  const status = byId("status");
  status.textContent = message;
  status.dataset.kind = kind;
}

export function reportError(error) {
  announce(error.message || String(error), "error");
}

// Start a page: send strangers to sign in, draw the chrome, then run `render` (errors shown, not thrown).
export function page(render, { admin = false } = {}) {
  if (!credentials.apiKey() && !(admin && credentials.adminToken())) {
    location.replace("index.html");
    return;
  }
  byId("site-header").append(navigation());
  if (admin && !credentials.adminToken()) {
    byId("main").prepend(adminTokenForm(() => location.reload()));
    announce("Admin pages need the admin token.");
    return;
  }
  Promise.resolve(render()).catch(reportError);
}

function adminTokenForm(done) {
  const input = el("input", { id: "admin-token", type: "password", autocomplete: "off", required: true });
  const submit = (event) => {
    event.preventDefault();
    credentials.setAdminToken(input.value.trim());
    done();
  };
  return el("form", { class: "card", id: "admin-token-form", onsubmit: submit },
    el("label", { for: "admin-token" }, "Admin token"), input,
    el("button", { type: "submit" }, "Use admin token"));
}

// Admin pages act on one tenant at a time; the choice survives page changes (sessionStorage).
export function chosenTenant() {
  return sessionStorage.getItem("ragstream.adminTenant") || "default";
}

export function tenantPicker(onChange) {
  const input = el("input", { id: "tenant-id", value: chosenTenant(), required: true, autocomplete: "off" });
  const submit = (event) => {
    event.preventDefault();
    sessionStorage.setItem("ragstream.adminTenant", input.value.trim());
    Promise.resolve(onChange(input.value.trim())).catch(reportError);
  };
  return el("form", { class: "inline", id: "tenant-form", onsubmit: submit },
    el("label", { for: "tenant-id" }, "Tenant"), input, el("button", { type: "submit" }, "Show"));
}
