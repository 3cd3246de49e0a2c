// Dead-letter topics: their depth, their events, one event's details, and redrive (audited by the gateway).
import { api } from "./api.js";
import { byId, el, formatTime, table } from "./dom.js";
import { announce, page, reportError } from "./layout.js";

const topicPath = (topic) => `/v1/admin/dlq/${encodeURIComponent(topic)}/events`;

async function showEvent(topic, offset) {
  const detail = await api(`${topicPath(topic)}/${offset}`, { admin: true });
  const pre = byId("event-detail");
  pre.textContent = JSON.stringify(detail, null, 2);
  pre.hidden = false;
  pre.focus();
}

async function redrive(topic, offset) {
  const result = await api(`${topicPath(topic)}/${offset}/redrive`, { method: "POST", admin: true });
  announce(`Offset ${offset}: ${result.status || "redriven"}.`);
  await showEvents(topic);
}

async function showEvents(topic) {
  const events = await api(`${topicPath(topic)}?limit=50`, { admin: true });
  byId("events").replaceChildren(events.items.length ? table(`Dead letters in ${topic}, oldest first`, [
    ["Offset", (e) => String(e.dlq_offset)],
    ["Failed", (e) => formatTime(e.failed_at)],
    ["Tenant", (e) => e.tenant_id || "—"],
    ["Event", (e) => e.event_type],
    ["Reason", (e) => `${e.reason_class}: ${e.reason_message}`],
    ["Redriven", (e) => e.redriven ? formatTime(e.redriven.redriven_at) : "no"],
    ["", (e) => el("span", { class: "actions" },
      el("button", { type: "button", class: "secondary", "aria-label": `Details of offset ${e.dlq_offset}`,
        onclick: () => showEvent(topic, e.dlq_offset).catch(reportError) }, "Details"),
      e.redriven ? "" : el("button", { type: "button", "aria-label": `Redrive offset ${e.dlq_offset}`,
        onclick: () => redrive(topic, e.dlq_offset).catch(reportError) }, "Redrive"))],
  ], events.items) : el("p", {}, `${topic} holds no dead letters.`));
}

page(async () => {
  const depths = await api("/v1/admin/dlq", { admin: true });
  byId("depths").replaceChildren(table("Depth of every dead-letter topic", [
    ["Topic", (t) => el("button", { type: "button", class: "link", "aria-label": `Show events of ${t.dlq_topic}`,
      onclick: () => showEvents(t.dlq_topic).catch(reportError) }, t.dlq_topic)],
    ["Retained", (t) => String(t.depth)],
    ["Redriven", (t) => String(t.redriven)],
  ], depths.topics));
}, { admin: true });
