"""Chaos suite: the whole system as real processes, faults injected mid-ingest and mid-query, then an audit."""
