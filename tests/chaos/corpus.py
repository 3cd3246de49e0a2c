"""The chaos corpus (small distinct documents, each carrying a unique token) and a client that uploads it.

The uploader behaves like a well-written client: concurrent uploads, retried after connection errors, 429 and 5xx
with capped backoff. What counts for the audit is what the gateway acknowledged with 202 (the version it
registered and published); a retry answered 200 `unchanged` means an earlier attempt registered the version and the
client never saw the answer, so those are kept apart.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

FILLER = (
    "river harbor lantern meadow copper signal orchard canyon ledger pilot quarry beacon timber glacier market "
    "saddle window garden engine thunder marble compass violet island ribbon anchor falcon willow cobalt summit "
    "meadowlark fountain prairie cedar harvest voyage ember granite shuttle maple horizon parcel tunnel orbit "
    "lattice pepper cotton mirror velvet basalt walnut canal kettle furnace spindle ferry quiver pebble thistle"
).split()
SYLLABLES = ("zor", "vek", "quil", "brun", "tace", "mox", "plin", "dray", "fesk", "yurn", "glo", "wix", "ramb", "ost")


@dataclass(frozen=True)
class Doc:
    document_id: str
    token: str
    title: str
    text: str


def _paragraph(rng: random.Random, words: int) -> str:
    sentences, left = [], words
    while left > 0:
        size = min(left, rng.randint(8, 14))
        sentence = " ".join(rng.choice(FILLER) for _ in range(size))
        sentences.append(sentence.capitalize() + ".")
        left -= size
    return " ".join(sentences)


def make_corpus(prefix: str, count: int, seed: int) -> list[Doc]:
    """`count` documents: three paragraphs each (every fourth one seven, so some have several chunks), each with a
    token no other document (of any scenario: the prefix is in the seed) contains."""
    rng = random.Random(f"{prefix}/{seed}")
    tokens: set[str] = set()
    docs = []
    for index in range(count):
        token = ""
        while not token or token in tokens:
            token = "".join(rng.choice(SYLLABLES) for _ in range(5))
        tokens.add(token)
        paragraphs = [_paragraph(rng, rng.randint(35, 55)) for _ in range(7 if index % 4 == 3 else 3)]
        where = rng.randrange(len(paragraphs))
        paragraphs[where] += f" The catalogue marker of this record is {token}."
        docs.append(Doc(f"{prefix}-{index:04d}", token, f"Chaos note {index}", "\n\n".join(paragraphs)))
    return docs


@dataclass
class UploadLedger:
    acked: dict[str, int] = field(default_factory=dict)  # document id -> version the gateway answered 202 with
    unchanged_after_retry: set[str] = field(default_factory=set)
    gave_up: dict[str, str] = field(default_factory=dict)
    failed_attempts: int = 0


class Uploader:
    """Uploads `docs` through the gateway, `concurrency` at a time, each retried until `give_up_s` after the start."""

    def __init__(self, client: httpx.AsyncClient, docs: list[Doc], concurrency: int = 8, give_up_s: float = 300.0):
        self._client = client
        self._docs = docs
        self._concurrency = concurrency
        self._give_up_s = give_up_s
        self.ledger = UploadLedger()
        self._progress = asyncio.Condition()

    async def run(self) -> UploadLedger:
        queue: asyncio.Queue[Doc] = asyncio.Queue()
        for doc in self._docs:
            queue.put_nowait(doc)
        deadline = time.monotonic() + self._give_up_s
        await asyncio.gather(*(self._worker(queue, deadline) for _ in range(self._concurrency)))
        return self.ledger

    async def wait_acked(self, count: int, timeout_s: float = 120.0) -> None:
        """Until `count` uploads were acknowledged (the moment a scenario injects its fault)."""
        async with asyncio.timeout(timeout_s), self._progress:
            await self._progress.wait_for(lambda: self._settled() >= min(count, len(self._docs)))

    def _settled(self) -> int:
        ledger = self.ledger
        return len(ledger.acked) + len(ledger.unchanged_after_retry) + len(ledger.gave_up)

    async def _worker(self, queue: asyncio.Queue[Doc], deadline: float) -> None:
        while not queue.empty():
            doc = queue.get_nowait()
            await self._upload(doc, deadline)
            async with self._progress:
                self._progress.notify_all()

    async def _upload(self, doc: Doc, deadline: float) -> None:
        body = {"id": doc.document_id, "title": doc.title, "text": doc.text, "metadata": {"suite": "chaos"}}
        attempt, retried, last = 0, False, ""
        while time.monotonic() < deadline:
            attempt += 1
            try:
                response = await self._client.post("/v1/documents", json=body)
            except httpx.TransportError as exc:  # the gateway died or is restarting: the client's job is to retry
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 202:
                    self.ledger.acked[doc.document_id] = int(response.json()["version"])
                    return
                if response.status_code == 200 and retried:
                    self.ledger.unchanged_after_retry.add(doc.document_id)
                    return
                if response.status_code == 200:
                    self.ledger.acked[doc.document_id] = int(response.json()["version"])
                    return
                last = f"{response.status_code}: {response.text[:200]}"
                if response.status_code not in (429, 500, 502, 503, 504):
                    break
            retried = True
            self.ledger.failed_attempts += 1
            await asyncio.sleep(min(0.25 * 2 ** min(attempt, 5), 5.0))
        self.ledger.gave_up[doc.document_id] = last
