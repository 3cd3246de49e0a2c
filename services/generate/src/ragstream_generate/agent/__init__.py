"""Agentic multi-step retrieval: a bounded loop of searches planned by a model-free planner (the default) or an
LLM, answered from the evidence of every step with citations numbered across them."""
