// A tenant's quotas (used against limit) and metered usage per bucket, as inline SVG bar charts (no library).
import { api } from "./api.js";
import { byId, el, svg } from "./dom.js";
import { chosenTenant, page, tenantPicker } from "./layout.js";

const METRICS = [
  ["questions", "Questions"], ["searches", "Searches"], ["documents_ingested", "Documents ingested"],
  ["chunks_embedded", "Chunks embedded"], ["tokens_in", "Tokens in"], ["tokens_out", "Tokens out"],
];
const WIDTH = 600;
const HEIGHT = 160;
let chartCount = 0;

// Bars of `values` (label, number) scaled to the largest; the SVG is labelled, and a text total follows it.
function barChart(title, values) {
  const id = `chart-${++chartCount}`;
  const largest = Math.max(1, ...values.map(([, value]) => value));
  const slot = WIDTH / Math.max(values.length, 1);
  const bars = values.map(([label, value], i) => {
    const height = Math.round((value / largest) * (HEIGHT - 20));
    return svg("rect", { x: i * slot + 2, y: HEIGHT - height, width: Math.max(slot - 4, 1), height, class: "bar" },
      svg("title", {}, document.createTextNode(`${label}: ${value}`)));
  });
  const total = values.reduce((sum, [, value]) => sum + value, 0);
  return el("figure", { class: "chart" },
    svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-labelledby": id, class: "bars" },
      svg("title", { id }, document.createTextNode(`${title}: ${total} in ${values.length} buckets`)),
      svg("line", { x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5, class: "axis" }), ...bars),
    el("figcaption", {}, `${title}: ${total} in all (largest bucket ${values.length ? largest : 0})`));
}

function quotaRow(name, quota) {
  const share = quota.limit ? Math.min(quota.used / quota.limit, 1) : 0;
  const text = quota.limit === null ? `${quota.used} used, no limit` : `${quota.used} of ${quota.limit} used`;
  return el("div", { class: "quota" }, el("span", {}, `${name}: ${text} (${quota.source})`),
    svg("svg", { viewBox: "0 0 100 6", preserveAspectRatio: "none", class: "meter", role: "img",
      "aria-label": `${name}: ${text}` },
      svg("rect", { x: 0, y: 0, width: 100, height: 6, class: "meter-track" }),
      svg("rect", { x: 0, y: 0, width: Math.round(share * 100), height: 6, class: "bar" })));
}

async function showQuotas(tenantId) {
  const usage = await api(`/v1/admin/tenants/${encodeURIComponent(tenantId)}/usage`, { admin: true });
  byId("quotas").replaceChildren(el("p", {}, `Day ${usage.day}`),
    quotaRow("Documents", usage.documents), quotaRow("Stored bytes", usage.stored_bytes),
    quotaRow("Questions today", usage.questions_per_day));
}

async function showMetered(tenantId) {
  const granularity = byId("granularity").value;
  const query = new URLSearchParams({ granularity });
  const usage = await api(`/v1/admin/tenants/${encodeURIComponent(tenantId)}/usage/metered?${query}`, { admin: true });
  if (!usage.buckets.length) {
    byId("charts").replaceChildren(el("p", {}, `No metered usage from ${usage.from} to ${usage.to}.`));
    return;
  }
  const labelled = (metric) => usage.buckets.map((b) => [new Date(b.start).toLocaleString(), b[metric]]);
  byId("charts").replaceChildren(...METRICS.map(([metric, title]) => barChart(title, labelled(metric))));
}

async function show(tenantId) {
  const results = await Promise.allSettled([showQuotas(tenantId), showMetered(tenantId)]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

page(async () => {
  byId("picker").append(tenantPicker(show));
  byId("range").addEventListener("submit", (event) => {
    event.preventDefault();
    byId("tenant-form").requestSubmit();
  });
  await show(chosenTenant());
}, { admin: true });
