"""Generate service settings (env prefix GENERATE_)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from ragstream_common.config import ServiceSettings
from ragstream_common.grpc_server import GrpcTlsSettings
from ragstream_common.registry import SERVICES
from ragstream_common.reply_targets import ReplyTargetSettings
from ragstream_common.service_tokens import TokenSettings


class GenerateSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENERATE_", extra="ignore")

    service_name: str = "generate"
    grpc_port: int = Field(default=SERVICES["generate"].grpc_port, ge=0, le=65535)
    metrics_port: int = Field(default=SERVICES["generate"].metrics_port, ge=0, le=65535)
    group_id: str = "ragstream-generate"
    max_batch: int = Field(default=16, ge=1, le=256)
    backend: str = Field(default="extractive", pattern="^(extractive|openai)$")
    # Any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp, OpenAI, Azure).
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_api_key: SecretStr = SecretStr("not-needed")
    openai_model: str = "gpt-4o-mini"
    openai_timeout_s: float = Field(default=30.0, gt=0)
    openai_max_retries: int = Field(default=2, ge=0, le=5)
    max_sentences: int = Field(default=3, ge=1, le=20)
    # Answers stream straight to the gateway instance a query names: one cached channel per instance address.
    # The stream lasts as long as the backend composes the answer, hence its longer bound.
    reply_timeout_s: float = Field(default=2.0, gt=0)
    answer_stream_timeout_s: float = Field(default=60.0, gt=0)
    reply_max_channels: int = Field(default=64, ge=1, le=4096)
    # REPLY_ALLOWED_TARGETS: the only reply_to addresses dialled (empty: none).
    reply_targets: ReplyTargetSettings = Field(default_factory=ReplyTargetSettings)
    # TOKEN_*: GenerateService verifies tokens; generate mints them for its replies.
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    grpc_tls: GrpcTlsSettings = Field(default_factory=GrpcTlsSettings)
    # Agent mode: follow-up searches go to RetrieveService.Search here, planned by `agent_planner` ("rules":
    # model-free, the default; "llm": the openai_* endpoint with tool calling, falling back to "rules").
    retrieve_address: str = f"127.0.0.1:{SERVICES['retrieve'].grpc_port}"
    agent_planner: str = Field(default="rules", pattern="^(rules|llm)$")
    agent_default_steps: int = Field(default=4, ge=1, le=8)
    agent_max_steps: int = Field(default=8, ge=1, le=8)
    agent_evidence_k: int = Field(default=3, ge=1, le=20)
    # The model-free planner's last resort: one RM3 expansion of the question over step 1's sources (docs/agent.md).
    agent_expansion: bool = True
    agent_step_timeout_s: float = Field(default=5.0, gt=0)
    agent_answer_reserve_s: float = Field(default=0.3, ge=0)
    # Tokens an LLM planner may spend on one query (0: unbounded), and per-tenant overrides (JSON object).
    agent_token_budget: int = Field(default=20_000, ge=0)
    agent_tenant_token_budgets: dict[str, int] = Field(default_factory=dict)
