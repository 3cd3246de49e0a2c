"""`ragstream ingest` planning: stable document ids, file discovery, and each file's state machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ragstream_cli.ingest_plan import FileProgress, FileState, PlannedFile, document_id, duplicates, plan

pytestmark = pytest.mark.unit
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def progress() -> FileProgress:
    return FileProgress(PlannedFile(Path("/x/a.md"), "a.md", "a.md"))


def test_ids_are_stable_valid_and_distinct() -> None:
    assert document_id("notes/a.md") == "notes:a.md"
    assert document_id("a.md", prefix="wiki:") == "wiki:a.md"
    spaced, dashed = document_id("my notes/a b.md"), document_id("my-notes/a-b.md")
    assert spaced == document_id("my notes/a b.md") and spaced != dashed
    long = document_id("/".join(["folder" * 5] * 10) + "/é.txt")
    for value in (spaced, dashed, long):
        assert VALID_ID.fullmatch(value), value


def test_plan_walks_folders_skips_hidden_and_honours_glob(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ("a.md", "b.pdf", ".hidden.txt", "sub/c.md", ".git/config"):
        (tmp_path / name).write_text("x")
    flat = [f.relative for f in plan([tmp_path], recursive=False, pattern="*")]
    assert flat == ["a.md", "b.pdf"]
    deep = plan([tmp_path], recursive=True, pattern="*.md")
    assert [(f.relative, f.document_id) for f in deep] == [("a.md", "a.md"), ("sub/c.md", "sub:c.md")]
    single = plan([tmp_path / "sub" / "c.md"], recursive=False, pattern="*")
    assert [f.document_id for f in single] == ["c.md"]
    with pytest.raises(FileNotFoundError):
        plan([tmp_path / "missing"], recursive=False, pattern="*")


def test_duplicates_across_arguments(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "README.md").write_text(folder)
    files = plan([tmp_path / "one", tmp_path / "two"], recursive=False, pattern="*")
    assert list(duplicates(files)) == ["README.md"]


def test_new_upload_goes_uploaded_processing_indexed() -> None:
    item = progress()
    item.start_upload()
    assert item.state is FileState.uploading
    item.accepted({"document_id": "a.md", "version": 1, "status": "received", "unchanged": False})
    assert item.state is FileState.uploaded and not item.done
    item.observe({"status": "processing"})
    assert item.state is FileState.processing
    item.observe({"status": "received"})  # a stale read never steps back
    assert item.state is FileState.processing
    item.observe({"status": "indexed", "chunk_count": 3})
    assert (item.state, item.chunks, item.done) == (FileState.indexed, 3, True)
    item.observe({"status": "failed", "error": {"stage": "x", "message": "y"}})  # terminal stays terminal
    assert item.state is FileState.indexed


def test_unchanged_and_indexed_is_skipped() -> None:
    item = progress()
    item.accepted({"version": 4, "status": "indexed", "unchanged": True})
    assert (item.state, item.version) == (FileState.skipped, 4)


def test_unchanged_but_still_processing_is_followed_to_skipped() -> None:
    item = progress()
    item.accepted({"version": 1, "status": "processing", "unchanged": True})
    assert item.state is FileState.processing
    item.observe({"status": "indexed"})
    assert item.state is FileState.skipped


def test_failures_carry_their_reason() -> None:
    item = progress()
    item.accepted({"version": 1, "status": "received"})
    item.observe({"status": "failed", "error": {"stage": "parse", "message": "not a PDF"}})
    assert (item.state, item.reason) == (FileState.failed, "parse: not a PDF")
    refused = progress()
    refused.refused("415 urn:ragstream:problem:unsupported-content: bad bytes")
    assert refused.done and "unsupported-content" in refused.reason
    slow = progress()
    slow.accepted({"version": 1, "status": "processing"})
    slow.timed_out(5)
    assert slow.state is FileState.failed and "still processing after 5 s" in slow.reason
