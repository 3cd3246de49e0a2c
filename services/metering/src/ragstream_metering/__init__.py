"""Usage metering: rag.usage.recorded.v1 aggregated per tenant and minute with faust-streaming, into
usage_minutes."""
