"""The multi-hop eval's options and measures, and eval_retrieval's agent mode, on small synthetic replies."""

from __future__ import annotations

from typing import Any

import pytest
from support.bench_modules import BENCHMARKS, load_benchmark

pytestmark = pytest.mark.unit

eval_multihop = load_benchmark("bench_eval_multihop", BENCHMARKS / "eval_multihop.py")
eval_retrieval = load_benchmark("bench_eval_retrieval", BENCHMARKS / "eval_retrieval.py")

QUESTIONS = [
    {"id": "q1", "question": "Which office?", "type": "bridge", "supporting": ["charter-a", "staff-b"],
     "expected": ["Lisbon"]},
    {"id": "q2", "question": "Caps?", "type": "comparison", "supporting": ["policy-1", "policy-2"],
     "expected": ["180", "210"]},
    {"id": "q3", "question": "Who leads A?", "type": "single", "supporting": ["charter-a"], "expected": ["Ana"]},
]  # fmt: skip


def _source(document: str, chunk: str) -> dict[str, Any]:
    return {"document_id": f"multihop-{document}", "chunk_id": chunk, "score": 0.5}


def _reply(
    answer: str, cited: list[str], steps: list[list[str]] | None = None, exit_reason: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "answer": answer,
        "citations": [
            {"index": n, "document_id": f"multihop-{d}", "chunk_id": f"{d}#0"} for n, d in enumerate(cited, 1)
        ],
        "timings": {"total": 12.0},
    }
    if steps is not None:
        body["steps"] = [
            {"step": n, "query": "q", "reason": "", "sources": [_source(d, f"{d}#0") for d in found], "new_sources": 1}
            for n, found in enumerate(steps, 1)
        ]
        body["exit_reason"] = exit_reason
    return body


def test_options_default_to_both_systems_top_5_and_4_steps() -> None:
    args = eval_multihop.parse_args([])
    assert (args.systems, args.top_k, args.max_steps, args.limit) == (["single", "agent"], 5, 4, None)
    args = eval_multihop.parse_args(["--limit", "3", "--top-k", "8", "--max-steps", "2", "--systems", "agent"])
    assert (args.systems, args.top_k, args.max_steps, args.limit) == (["agent"], 8, 2, 3)
    args = eval_multihop.parse_args(["--url", "http://gw:8080", "--api-key", "k"])
    assert (args.url, args.api_key) == ("http://gw:8080", "k")


@pytest.mark.parametrize("argv", [["--systems", "oracle"], ["--max-steps", "0"], ["--top-k", "0"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        eval_multihop.parse_args(argv)


def test_the_agent_body_carries_max_steps_and_the_single_shot_body_does_not() -> None:
    assert eval_multihop.query_body("q?", "single", 5, 4) == {"question": "q?", "top_k": 5, "mode": "answer"}
    assert eval_multihop.query_body("q?", "agent", 5, 4) == {
        "question": "q?",
        "top_k": 5,
        "mode": "agent",
        "max_steps": 4,
    }


def test_answers_must_hold_every_expected_string_ignoring_case_and_spacing() -> None:
    assert eval_multihop.answer_is_correct("The cap rose from 180 to  210 euros.", ["180", "210"])
    assert not eval_multihop.answer_is_correct("The cap is 210 euros.", ["180", "210"])
    assert eval_multihop.answer_is_correct("She works from the LISBON\noffice.", ["lisbon office"])


def test_support_needs_every_supporting_document_among_the_citations() -> None:
    outcomes = [
        eval_multihop.Outcome("q1", 200, 10.0, _reply("Lisbon [2]", ["charter-a", "staff-b", "other"])),
        eval_multihop.Outcome("q2", 200, 20.0, _reply("180 and 210", ["policy-1"])),
        eval_multihop.Outcome("q3", 200, 30.0, _reply("Ana leads it.", ["charter-a"])),
    ]
    scores = eval_multihop.score(QUESTIONS, outcomes, agent=False)
    assert (scores["support_recall"], scores["answer_accuracy"]) == (round(2 / 3, 4), 1.0)
    assert (scores["p50_ms"], scores["failures"], scores["n"]) == (20.0, 0, 3)
    assert scores["by_type"]["comparison"] == {
        "n": 1,
        "support_recall": 0.0,
        "answer_accuracy": 1.0,
        "answer_precision": 1.0,
    }
    assert "mean_steps" not in scores and set(scores["by_type"]) == {"bridge", "comparison", "single"}


def test_failed_and_missing_replies_score_zero_and_are_counted() -> None:
    outcomes = [
        eval_multihop.Outcome("q1", 503, 5.0, None, "overloaded"),
        eval_multihop.Outcome("q3", 200, 30.0, _reply("Ana.", ["charter-a"])),
    ]  # q2 never came back
    scores = eval_multihop.score(QUESTIONS, outcomes, agent=False)
    assert (scores["support_recall"], scores["answer_accuracy"]) == (round(1 / 3, 4), round(1 / 3, 4))
    assert (scores["failures"], scores["p50_ms"]) == (1, 30.0)  # latency of answered questions only


def test_the_agent_scores_steps_exit_reasons_and_what_its_steps_found() -> None:
    outcomes = [
        eval_multihop.Outcome(
            "q1", 200, 100.0, _reply("Lisbon", ["staff-b"], [["charter-a"], ["staff-b"]], "no_new_evidence")
        ),
        eval_multihop.Outcome(
            "q2", 200, 300.0, _reply("180; 210", ["policy-1", "policy-2"], [["policy-1", "policy-2"]], "answered")
        ),
        eval_multihop.Outcome(
            "q3", 200, 200.0, _reply("Ana", ["charter-a"], [["charter-a"], ["x"], ["y"], ["z"]], "step_budget")
        ),
    ]
    scores = eval_multihop.score(QUESTIONS, outcomes, agent=True)
    assert scores["mean_steps"] == round(7 / 3, 2)
    assert (scores["support_recall"], scores["found_recall"], scores["answer_accuracy"]) == (round(2 / 3, 4), 1.0, 1.0)
    assert scores["exit_reasons"] == {"answered": 1, "no_new_evidence": 1, "step_budget": 1}
    assert (scores["p50_ms"], scores["p95_ms"]) == (200.0, 290.0)


def test_rivals_are_found_as_whole_words_ignoring_case_and_spacing() -> None:
    rivals = ["Siobhan Kelly", "2015", "1.2 million", "Porto"]
    answer = "The project lead is Kwame Mensah [1]. SIOBHAN  KELLY is the project lead [2]. Budget 11.2 million."
    assert eval_multihop.rivals_stated(answer, rivals) == ["Siobhan Kelly"]
    assert eval_multihop.rivals_stated("Joined in 20151; based in Portonovo; 1.25 million.", rivals) == []
    assert eval_multihop.rivals_stated("Joined in 2015.", rivals) == ["2015"]  # a sentence's full stop ends it


def test_precision_needs_the_expected_fact_and_no_rival_beside_it() -> None:
    rivals = ["Siobhan Kelly", "Priya Raman"]
    assert eval_multihop.answer_is_precise("The project lead is Kwame Mensah [1].", ["Kwame Mensah"], rivals)
    noisy = "The project lead is Kwame Mensah [1]. Siobhan Kelly is the project lead [2]."
    assert eval_multihop.answer_is_correct(noisy, ["Kwame Mensah"])
    assert not eval_multihop.answer_is_precise(noisy, ["Kwame Mensah"], rivals)
    assert not eval_multihop.answer_is_precise("No rival, no answer.", ["Kwame Mensah"], rivals)


def test_answer_precision_is_scored_per_system_and_type() -> None:
    questions = [
        {**QUESTIONS[0], "rivals": ["Oslo", "Austin"]},
        {**QUESTIONS[1], "rivals": ["155"]},
        QUESTIONS[2],  # no rivals listed: precise when accurate
    ]
    outcomes = [
        eval_multihop.Outcome("q1", 200, 10.0, _reply("Lisbon [1]. Oslo [2].", ["charter-a", "staff-b"])),
        eval_multihop.Outcome("q2", 200, 10.0, _reply("180 and 210", ["policy-1", "policy-2"])),
        eval_multihop.Outcome("q3", 200, 10.0, _reply("Ana", ["charter-a"])),
    ]
    scores = eval_multihop.score(questions, outcomes, agent=False)
    assert (scores["answer_accuracy"], scores["answer_precision"]) == (1.0, round(2 / 3, 4))
    assert scores["by_type"]["bridge"]["answer_precision"] == 0.0
    assert scores["by_type"]["comparison"]["answer_precision"] == 1.0


def test_heldout_picks_the_held_out_folder_and_refuses_another_dataset() -> None:
    assert eval_multihop.parse_args([]).dataset == eval_multihop.DATASET_DIR
    args = eval_multihop.parse_args(["--heldout"])
    assert args.heldout and args.dataset == eval_multihop.HELDOUT_DIR
    assert (args.dataset / "questions.jsonl").is_file() and (args.dataset / "corpus.jsonl").is_file()
    with pytest.raises(SystemExit):
        eval_multihop.parse_args(["--heldout", "--dataset", "/tmp"])


def test_the_embedding_backend_is_what_embed_settings_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBED_BACKEND", "onnx")
    monkeypatch.delenv("EMBED_QUERY_BACKEND", raising=False)
    recorded = eval_multihop.embedding_backend()
    assert recorded["backend"] == "onnx" and recorded["query_backend"] == "onnx" and recorded["model"]


def test_the_table_prints_both_systems_and_every_type(capsys: pytest.CaptureFixture[str]) -> None:
    reply = _reply("Lisbon 180 210 Ana", ["charter-a", "staff-b", "policy-1", "policy-2"], [["charter-a"]])
    outcomes = [eval_multihop.Outcome(q["id"], 200, 10.0, reply) for q in QUESTIONS]
    results = {
        "single": eval_multihop.score(QUESTIONS, outcomes, agent=False),
        "agent": eval_multihop.score(QUESTIONS, outcomes, agent=True),
    }
    eval_multihop.print_table(results, len(QUESTIONS))
    printed = capsys.readouterr().out
    assert "single" in printed and "agent" in printed and "1.00" in printed
    assert all(kind in printed for kind in ("bridge", "comparison", "single")) and "conjunction" not in printed


def test_eval_retrieval_accepts_agent_mode_on_request_only() -> None:
    assert eval_retrieval.parse_args([]).modes == ["dense", "lexical", "hybrid"]
    args = eval_retrieval.parse_args(["--modes", "hybrid,agent"])
    assert (args.modes, args.agent_top_k, args.max_steps) == (["hybrid", "agent"], 10, 4)
    with pytest.raises(SystemExit):
        eval_retrieval.parse_args(["--modes", "oracle"])


def test_agent_rankings_follow_the_steps_first_occurrence_first() -> None:
    steps = [
        {"sources": [{"document_id": "scifact-7"}, {"document_id": "scifact-3"}, {"document_id": "scifact-7"}]},
        {"sources": [{"document_id": "scifact-3"}, {"document_id": "other-1"}, {"document_id": "scifact-9"}]},
        {"sources": []},
    ]
    assert eval_retrieval.documents_from_steps(steps, "scifact") == ["7", "3", "9"]
    assert eval_retrieval.documents_from_steps([], "scifact") == []
