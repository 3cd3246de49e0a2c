"""Answer backends: extractive (default, no model) and any OpenAI-compatible chat endpoint."""

from ragstream_generate.backends.base import (
    NO_ANSWER_TEXT,
    AnswerBackend,
    AnswerEvent,
    CitationRef,
    DraftAnswer,
)
from ragstream_generate.backends.extractive import ExtractiveBackend, ExtractiveConfig
from ragstream_generate.backends.openai_chat import OpenAIChatBackend, OpenAIChatConfig

__all__ = [
    "NO_ANSWER_TEXT",
    "AnswerBackend",
    "AnswerEvent",
    "CitationRef",
    "DraftAnswer",
    "ExtractiveBackend",
    "ExtractiveConfig",
    "OpenAIChatBackend",
    "OpenAIChatConfig",
]
