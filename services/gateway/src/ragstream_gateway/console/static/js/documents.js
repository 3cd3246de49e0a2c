// Upload by drag and drop or file input, with per-file progress and live status; the list, filtered and paged.
import { api, uploadFile } from "./api.js";
import { byId, el, formatTime, table } from "./dom.js";
import { announce, page, reportError } from "./layout.js";

const FINAL = new Set(["indexed", "failed", "deleted"]);
const POLL_MS = 1000;
let nextCursor = null;
let loaded = [];

function uploadRow(file) {
  const progress = el("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}` });
  const state = el("span", { class: "state" }, "uploading");
  const row = el("li", { "data-file": file.name }, el("span", { class: "file-name" }, file.name), progress, state);
  byId("uploads").append(row);
  return { progress, state, row };
}

async function followStatus(documentId, { state, row }) {
  for (;;) {
    const view = await api(`/v1/documents/${encodeURIComponent(documentId)}`);
    state.textContent = view.error ? `${view.status}: ${view.error.message}` : view.status;
    row.dataset.status = view.status;
    if (FINAL.has(view.status)) {
      announce(`${view.title || documentId} is ${view.status}.`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function uploadOne(file) {
  const ui = uploadRow(file);
  try {
    const accepted = await uploadFile(file, (fraction) => { ui.progress.value = fraction; });
    ui.progress.value = 1;
    ui.row.dataset.documentId = accepted.document_id;
    ui.state.textContent = accepted.status;
    await followStatus(accepted.document_id, ui);
    await refreshList();
  } catch (error) {
    ui.state.textContent = `failed: ${error.message}`;
    ui.row.dataset.status = "refused";
    reportError(error);
  }
}

function uploadAll(files) {
  announce(`Uploading ${files.length} file(s).`);
  return Promise.all(Array.from(files).map(uploadOne));
}

function wireDropZone() {
  const zone = byId("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    uploadAll(event.dataTransfer.files);
  });
  const input = byId("file-input");
  input.addEventListener("change", () => { uploadAll(input.files); input.value = ""; });
}

async function remove(doc) {
  if (!confirm(`Delete ${doc.title || doc.document_id}?`)) return;
  await api(`/v1/documents/${encodeURIComponent(doc.document_id)}`, { method: "DELETE" });
  announce(`Deleted ${doc.title || doc.document_id}.`);
  await refreshList();
}

// The API filters by status; the search box narrows the loaded pages by title or id (no server-side search).
function renderList() {
  const needle = byId("search-box").value.trim().toLowerCase();
  const rows = loaded.filter((d) => !needle || `${d.title} ${d.document_id}`.toLowerCase().includes(needle));
  const deleteButton = (d) => d.status === "deleted" ? "" : el("button", {
    type: "button", class: "danger", "aria-label": `Delete ${d.title || d.document_id}`,
    onclick: () => remove(d).catch(reportError),
  }, "Delete");
  byId("document-list").replaceChildren(rows.length ? table("Documents, newest first", [
    ["Title", (d) => d.title || "(untitled)"],
    ["Id", (d) => el("code", {}, d.document_id)],
    ["Status", (d) => d.error ? `${d.status} (${d.error.message})` : d.status],
    ["Chunks", (d) => String(d.chunk_count)],
    ["Updated", (d) => formatTime(d.updated_at)],
    ["", deleteButton],
  ], rows) : el("p", {}, "No documents match."));
  byId("load-more").hidden = !nextCursor;
}

async function loadPage(cursor) {
  const query = new URLSearchParams({ limit: "50" });
  const status = byId("status-filter").value;
  if (status) query.set("status", status);
  if (cursor) query.set("cursor", cursor);
  const pageOfDocuments = await api(`/v1/documents?${query}`);
  nextCursor = pageOfDocuments.next_cursor;
  return pageOfDocuments.items;
}

async function refreshList() {
  loaded = await loadPage(null);
  renderList();
}

page(async () => {
  wireDropZone();
  byId("list-filter").addEventListener("submit", (event) => { event.preventDefault(); refreshList().catch(reportError); });
  byId("search-box").addEventListener("input", renderList);
  byId("load-more").addEventListener("click", async () => {
    loaded = loaded.concat(await loadPage(nextCursor));
    renderList();
  });
  await refreshList();
});
