"""Generate service settings (env prefix GENERATE_)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from ragstream_common.config import ServiceSettings


class GenerateSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENERATE_", extra="ignore")

    service_name: str = "generate"
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    metrics_port: int = Field(default=9104, ge=0, le=65535)
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
