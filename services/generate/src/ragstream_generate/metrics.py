"""The generate service's Prometheus metrics (the one way it counts); served on GENERATE_METRICS_PORT."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from ragstream_common.stage_metrics import declare_stages

# outcome: answered | no_answer | expired | failed. backend: the backend that wrote the answer (the extractive
# fallback after a failed LLM call), or the configured one for queries that got no answer.
ANSWERS = Counter(
    "ragstream_generate_answers_total", "Queries by answering backend and outcome", ["backend", "outcome"]
)
DEGRADED = Counter(
    "ragstream_generate_degraded_answers_total", "Answers from the fallback after the configured backend failed"
)
ANSWER_SECONDS = Histogram(
    "ragstream_generate_answer_seconds",
    "Time to compose and stream one answer",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0),
)
CITATIONS = Histogram(
    "ragstream_generate_citations_per_answer",
    "Citations per produced answer",
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20),
)
TOKENS_STREAMED = Counter("ragstream_generate_tokens_streamed_total", "Answer text pieces streamed to gateways")
# direction: in (prompt: question and sources) or out (answer). The OpenAI backend counts the endpoint's reported
# usage (a whitespace estimate when it reports none), the extractive backend whitespace-separated words.
TOKENS = Counter("ragstream_generate_tokens_total", "LLM tokens by backend and direction", ["backend", "direction"])
for _backend in ("extractive", "openai"):
    for _direction in ("in", "out"):
        TOKENS.labels(_backend, _direction)
# Agent mode. planner: rules | llm (the planner that finished the run); exit_reason: agent/state.ExitReason.
AGENT_RUNS = Counter(
    "ragstream_generate_agent_runs_total",
    "Agent-mode queries by planner and why their loop stopped",
    ["planner", "exit_reason"],
)
AGENT_STEPS = Histogram(
    "ragstream_generate_agent_steps", "Retrieval steps per agent-mode query", buckets=(1, 2, 3, 4, 5, 6, 7, 8)
)
# ragstream_stage_seconds: each backend times generate, from the request to its final draft.
declare_stages("generate")
