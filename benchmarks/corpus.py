"""BEIR-layout datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and indexing them through the gateway."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import log, send

FINAL_STATUSES = frozenset({"indexed", "failed", "deleted"})
PENDING_STATUSES = ("received", "processing")
LIST_PAGE = 500
# Below this many pending documents, asking for each one costs less than listing the pending ones.
FEW_PENDING = 64


@dataclass(frozen=True)
class Document:
    corpus_id: str
    title: str
    text: str


def load_corpus(path: Path, limit: int | None = None) -> list[Document]:
    """`path` is corpus.jsonl or the dataset folder holding it; the first `limit` documents in file order."""
    path = path / "corpus.jsonl" if path.is_dir() else path
    documents = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if limit is not None and len(documents) >= limit:
                break
            row = json.loads(line)
            documents.append(Document(str(row["_id"]), row.get("title") or "", row.get("text") or ""))
    return documents


def load_queries(dataset: Path) -> dict[str, str]:
    with (dataset / "queries.jsonl").open(encoding="utf-8") as lines:
        return {str(row["_id"]): row["text"] for row in map(json.loads, lines)}


def load_qrels(dataset: Path, split: str) -> dict[str, dict[str, int]]:
    """query id -> {corpus id: graded relevance}, from the TSV with header `query-id corpus-id score`."""
    qrels: dict[str, dict[str, int]] = {}
    with (dataset / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


@dataclass
class UploadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # ids answered 200 (unchanged) or 202
    first_sent: float = 0.0  # wall clock (time.time) of the first request
    elapsed_s: float = 0.0


async def upload_documents(
    client: httpx.AsyncClient, documents: Sequence[Document], id_prefix: str, concurrency: int
) -> UploadResult:
    """POST /v1/documents for each document as `<id_prefix>-<corpus id>`, at most `concurrency` at a time."""
    result = UploadResult(first_sent=time.time())
    started = time.perf_counter()
    queue: asyncio.Queue[Document] = asyncio.Queue()
    for document in documents:
        queue.put_nowait(document)

    async def worker() -> None:
        while not queue.empty():
            document = queue.get_nowait()
            body = {"id": f"{id_prefix}-{document.corpus_id}", "title": document.title, "text": document.text}
            response = await send(client, "POST", "/v1/documents", json=body)
            result.statuses[response.status_code] += 1
            if response.status_code in (200, 202):
                result.accepted.append(body["id"])
            else:
                result.errors.append(f"{body['id']}: {response.status_code} {response.text[:200]}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


async def _get_views(client: httpx.AsyncClient, ids: Iterable[str], concurrency: int = 8) -> dict[str, dict[str, Any]]:
    limit = asyncio.Semaphore(concurrency)

    async def get(document_id: str) -> tuple[str, dict[str, Any] | None]:
        async with limit:
            response = await send(client, "GET", f"/v1/documents/{document_id}")
        return document_id, response.json() if response.status_code == 200 else None

    pairs = await asyncio.gather(*(get(document_id) for document_id in ids))
    return {document_id: view for document_id, view in pairs if view is not None}


async def _listed_pending(client: httpx.AsyncClient) -> set[str]:
    """Ids of the tenant's documents still in the pipeline (listing filtered by status, all pages)."""
    pending: set[str] = set()
    for status in PENDING_STATUSES:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": LIST_PAGE, "status": status}
            if cursor:
                params["cursor"] = cursor
            response = await send(client, "GET", "/v1/documents", params=params)
            response.raise_for_status()
            page = response.json()
            pending.update(item["document_id"] for item in page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    return pending


async def wait_until_final(
    client: httpx.AsyncClient, document_ids: Iterable[str], timeout_s: float, poll_s: float = 1.0
) -> dict[str, dict[str, Any]]:
    """Each document's status body (GET /v1/documents/{id}) once it is indexed, failed or deleted.

    Progress is followed through the status-filtered listing, and each document is read by id once it has left
    the pipeline, so waiting costs about one GET per document however long indexing takes.
    """
    pending = set(document_ids)
    final: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while pending:
        candidates = pending if len(pending) <= FEW_PENDING else pending - await _listed_pending(client)
        for document_id, view in (await _get_views(client, candidates)).items():
            if view["status"] in FINAL_STATUSES:
                final[document_id] = view
                pending.discard(document_id)
        if time.monotonic() - last_report > 10:
            log(f"  indexing: {len(final)} final, {len(pending)} pending")
            last_report = time.monotonic()
        if not pending:
            break
        if time.monotonic() > deadline:
            example = sorted(pending)[:3]
            raise TimeoutError(f"{len(pending)} documents not indexed after {timeout_s:.0f}s, e.g. {example}")
        await asyncio.sleep(poll_s)
    return final


def summarise_views(views: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter(view["status"] for view in views.values())


async def index_dataset(
    client: httpx.AsyncClient,
    documents: Sequence[Document],
    id_prefix: str,
    *,
    concurrency: int = 8,
    timeout_s: float = 7200.0,
) -> dict[str, dict[str, Any]]:
    """Upload (identical content is a no-op at the gateway) and wait until every document is final."""
    log(f"uploading {len(documents)} documents as {id_prefix}-<id> ...")
    upload = await upload_documents(client, documents, id_prefix, concurrency)
    unchanged = upload.statuses.get(200, 0)
    log(f"  uploaded in {upload.elapsed_s:.1f}s: {dict(upload.statuses)} ({unchanged} unchanged)")
    if upload.errors:
        log(f"  {len(upload.errors)} uploads refused, e.g. {upload.errors[:3]}")
    views = await wait_until_final(client, upload.accepted, timeout_s)
    log(f"  final statuses: {dict(summarise_views(views))}")
    return views
