// Every worker's gRPC health as the gateway sees it, and the gateway's own readiness (GET /v1/admin/health).
import { api } from "./api.js";
import { byId, el, table } from "./dom.js";
import { announce, page, reportError } from "./layout.js";

async function show() {
  const health = await api("/v1/admin/health", { admin: true });
  const down = health.services.filter((s) => s.status !== "SERVING");
  byId("verdict").textContent = down.length
    ? `Not serving: ${down.map((s) => `${s.name} (${s.status})`).join(", ")}.`
    : `Every service is serving (${health.services.length}).`;
  byId("verdict").dataset.kind = down.length ? "error" : "ok";
  byId("services").replaceChildren(table("Each service's gRPC health", [
    ["Service", (s) => s.name],
    ["Status", (s) => el("span", { class: s.status === "SERVING" ? "health-ok" : "health-bad" }, s.status)],
    ["Latency (ms)", (s) => String(s.latency_ms)],
    ["Address", (s) => s.address],
    ["Detail", (s) => s.detail || "—"],
  ], health.services));
  const checks = Object.entries(health.gateway.checks).map(([name, ok]) => ({ name, ok }));
  byId("gateway").replaceChildren(table(`Gateway: ${health.gateway.status.replace("_", " ")}`, [
    ["Check", (c) => c.name],
    ["Result", (c) => el("span", { class: c.ok ? "health-ok" : "health-bad" }, c.ok ? "ok" : "failing")],
  ], checks));
  announce(health.status === "ok" ? "All healthy." : "Degraded.", health.status === "ok" ? "info" : "error");
}

page(async () => {
  byId("refresh").addEventListener("click", () => show().catch(reportError));
  await show();
}, { admin: true });
