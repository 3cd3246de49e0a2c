"""The Graph stand-in's own correctness where it computes what the real service computes: quickXorHash (test
vectors published with rclone's OneDrive backend, backend/onedrive/quickxorhash/quickxorhash_test.go) and the
delta feed's rules (the latest state per item, tombstones only for items a client may know)."""

from __future__ import annotations

import base64

import pytest
from standins.graph_drive import Content, Drive, QuickXorHash

pytestmark = pytest.mark.unit

VECTORS = [
    ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
    ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
    ("T6LYJIfDh81JrAK309H2JMJTXis=", "zBTHrspn3mEcohlJdIUAbjGNaNg="),
    ("DWAAX5/CIfrmErgZa8ot6ZraeSbu", "LR2Z0PjuRYGKQB/mhQAuMrAGZbQ="),
    (
        "PfxMcUd0vIW6VbHG/uj/Y0W6qEoKmyBD0nYebEKazKaKG+UaDqBEcmQjbfQeVnVLuodMoPp7P7TR1htX5n2VnkHh22xDyoJ8C/ZQKiSNqQfX"
        "vh83judf4RVr9exJCud8Uvgip6aVZTaPrJHVjQhMCp/dEnGvqg0oN5OVkM2qqAXvA0teKUDhgNM71sDBVBCGXxNOR2bpbD1iM4dnuT0ey4L+"
        "loXEHTL0fqMeUcEi2asgImnlNakwenDzz0x57aBwyq3AspCFGB1ncX4yYCr/OaCcS5OKi/00WH+wNQU3",
        "QX/YEpG0gDsmhEpCdWhsxDzsfVE=",
    ),
]


@pytest.mark.parametrize(("data", "digest"), VECTORS)
@pytest.mark.parametrize("piece", [1, 7, 160, 1000])
def test_quick_xor_hash_matches_published_vectors_in_any_piece_size(data: str, digest: str, piece: int) -> None:
    raw, hasher = base64.b64decode(data), QuickXorHash()
    for offset in range(0, len(raw), piece):
        hasher.update(raw[offset : offset + piece])
    assert hasher.digest() == digest


def test_generated_content_has_the_asked_size_and_stable_hashes() -> None:
    content = Content.of(None, 2_500_000, "seed")
    assert sum(len(piece) for piece in content.pieces()) == 2_500_000
    assert Content.of(None, 2_500_000, "seed").sha256 == content.sha256 != Content.of(None, 2_500_000, "other").sha256


def test_a_first_enumeration_skips_items_deleted_before_it_began() -> None:
    drive = Drive("b!d", "https://contoso.sharepoint.com/sites/x")
    kept = drive.create("kept.txt", "file", None, None, Content.of("a", None, "a"), "text/plain")
    gone = drive.create("gone.txt", "file", None, None, Content.of("b", None, "b"), "text/plain")
    drive.delete(gone)
    page, following = drive.delta_page({"e": 0, "full": True, "start": drive.seq, "p": 0}, top=10)
    assert following is None and [item["id"] for item in page] == [drive.root_id, kept]
    incremental, _ = drive.delta_page({"e": 0, "p": 0}, top=10)
    assert {"id": gone, "deleted": {"state": "deleted"}}.items() <= next(
        i for i in incremental if i["id"] == gone
    ).items()
