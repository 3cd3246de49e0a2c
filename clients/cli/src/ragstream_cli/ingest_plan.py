"""What `ragstream ingest` will upload and how each file's state moves, without any I/O on the gateway.

Document ids come from the path relative to the argument it was found under, so a re-run of the same command
names the same documents, and the gateway answers `unchanged` for the ones already there."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

MAX_ID = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileState(StrEnum):
    pending = "pending"
    uploading = "uploading"
    uploaded = "uploaded"
    processing = "processing"
    indexed = "indexed"
    skipped = "skipped"  # the gateway answered unchanged, and that version is indexed
    failed = "failed"


TERMINAL = frozenset({FileState.indexed, FileState.skipped, FileState.failed})
_ORDER = {FileState.pending: 0, FileState.uploading: 1, FileState.uploaded: 2, FileState.processing: 3}


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    relative: str  # POSIX path relative to the argument it was found under
    document_id: str


@dataclass
class FileProgress:
    """One file's way through upload and indexing; `observe` moves it forward only."""

    file: PlannedFile
    state: FileState = FileState.pending
    reason: str = ""
    unchanged: bool = False
    version: int | None = None
    chunks: int | None = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def start_upload(self) -> None:
        self.state = FileState.uploading

    def refused(self, reason: str) -> None:
        self.state, self.reason = FileState.failed, reason

    def accepted(self, answer: dict[str, Any]) -> None:
        """The upload's answer: 202 (a new version) or 200 `unchanged` with the current version's status."""
        self.unchanged = bool(answer.get("unchanged"))
        self.version = answer.get("version")
        self.state = FileState.uploaded
        self.observe(answer)

    def observe(self, document: dict[str, Any]) -> None:
        """A status read back from the gateway (the upload answer or GET /v1/documents/{id})."""
        if self.done:
            return
        status = document.get("status")
        if document.get("chunk_count") is not None:
            self.chunks = document["chunk_count"]
        if status == "indexed":
            self.state = FileState.skipped if self.unchanged else FileState.indexed
        elif status == "failed":
            error = document.get("error") or {}
            stage, message = error.get("stage"), error.get("message")
            self.refused(f"{stage}: {message}" if stage else (message or "failed (no reason given)"))
        elif status == "deleted":
            self.refused("the document was deleted while it was being ingested")
        elif status == "processing" and _ORDER[self.state] < _ORDER[FileState.processing]:
            self.state = FileState.processing

    def timed_out(self, seconds: float) -> None:
        if not self.done:
            self.refused(f"still {self.state.value} after {seconds:g} s (re-run to keep following it)")


def document_id(relative: str, prefix: str = "") -> str:
    """A valid document id (`^[A-Za-z0-9._:-]{1,128}$`) from a relative path: segments joined by ':', other
    characters replaced; when that loses information (or is too long) a hash of the path keeps ids apart."""
    segments = [_UNSAFE.sub("-", part) for part in relative.split("/")]
    readable = prefix + ":".join(segments)
    if readable == prefix + relative.replace("/", ":") and len(readable) <= MAX_ID:
        return readable
    digest = hashlib.sha256(relative.encode()).hexdigest()[:12]
    return f"{readable[: MAX_ID - 13]}-{digest}"


def plan(arguments: Iterable[Path], recursive: bool, pattern: str, prefix: str = "") -> list[PlannedFile]:
    """Every regular, non-hidden file under the arguments, in a stable order; files named directly are always
    taken. Raises FileNotFoundError for an argument that does not exist."""
    planned: list[PlannedFile] = []
    for argument in arguments:
        if argument.is_file():
            planned.append(PlannedFile(argument, argument.name, document_id(argument.name, prefix)))
            continue
        if not argument.is_dir():
            raise FileNotFoundError(str(argument))
        found = argument.rglob(pattern) if recursive else argument.glob(pattern)
        for path in sorted(found):
            relative = path.relative_to(argument).as_posix()
            if path.is_file() and not any(part.startswith(".") for part in relative.split("/")):
                planned.append(PlannedFile(path, relative, document_id(relative, prefix)))
    return planned


def duplicates(files: Iterable[PlannedFile]) -> dict[str, list[PlannedFile]]:
    """Ids that more than one file would get (the same relative path under two arguments)."""
    by_id: dict[str, list[PlannedFile]] = {}
    for file in files:
        by_id.setdefault(file.document_id, []).append(file)
    return {key: group for key, group in by_id.items() if len(group) > 1}
