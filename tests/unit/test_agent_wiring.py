"""The agent as the generate composition root builds it, and the filters each step's search carries."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
from fakes.agent import InMemorySearcher
from ragstream_generate.adapters.search_grpc import narrowed_filters
from ragstream_generate.agent.answering import AgentConfig
from ragstream_generate.agent.ports import SearchScope
from ragstream_generate.agent.rules_planner import ModelFreePlanner
from ragstream_generate.agent.state import AgentState
from ragstream_generate.app import build_agent
from ragstream_generate.backends.extractive import ExtractiveBackend
from ragstream_generate.config import GenerateSettings

pytestmark = pytest.mark.unit


async def test_the_settings_reach_the_agent_and_the_default_planner_is_model_free() -> None:
    settings = GenerateSettings(agent_default_steps=3, agent_token_budget=0, agent_tenant_token_budgets={"acme": 99})
    async with AsyncExitStack() as stack:
        agent = build_agent(settings, ExtractiveBackend(), InMemorySearcher({}), stack)
    assert agent.config.steps_for(0) == 3 and agent.config.steps_for(50) == 8
    assert agent.config.tokens_for("acme") == 99 and agent.config.tokens_for("other") is None


async def test_generate_agent_expansion_turns_the_model_free_planners_expansion_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert GenerateSettings().agent_expansion is True
    monkeypatch.setenv("GENERATE_AGENT_EXPANSION", "false")
    settings = GenerateSettings()
    async with AsyncExitStack() as stack:
        agent = build_agent(settings, ExtractiveBackend(), InMemorySearcher({}), stack)
    planner = agent._planner(AgentState("q"))
    assert isinstance(planner, ModelFreePlanner) and planner.config.expansion is False
    assert planner.config.evidence_k == settings.agent_evidence_k


async def test_the_llm_planner_runs_per_query_and_falls_back_to_the_model_free_one() -> None:
    settings = GenerateSettings(agent_planner="llm", openai_base_url="http://127.0.0.1:9/v1")
    async with AsyncExitStack() as stack:
        agent = build_agent(settings, ExtractiveBackend(), InMemorySearcher({}), stack)
        first, second = AgentState("a"), AgentState("b")
        assert agent._planner(first) is not agent._planner(second)  # one conversation per query
        assert agent._fallback is not None and agent._fallback(first).name == "rules"
    assert AgentConfig().tokens_for("x") == 20_000


def test_a_step_keeps_the_callers_metadata_and_may_only_narrow_it() -> None:
    scope = SearchScope("acme", metadata={"dept": "legal"})
    filters = narrowed_filters(scope, (), {"dept": "sales", "lang": "en"})
    assert filters is not None and dict(filters.metadata) == {"dept": "legal", "lang": "en"}


def test_a_step_may_read_only_documents_inside_the_callers_document_filter() -> None:
    scope = SearchScope("acme", document_ids=["d1", "d2"])
    assert narrowed_filters(scope, ["d3"], None) is None  # outside: no search at all
    inside = narrowed_filters(scope, ["d2"], None)
    assert inside is not None and list(inside.document_ids) == ["d2"]
    whole = narrowed_filters(scope, (), None)
    assert whole is not None and list(whole.document_ids) == ["d1", "d2"]
