"""The e2e tier's fixtures (`system`, `gateway`, `other_tenant_gateway`, the provider stand-ins, the OTLP receiver)
live in tests/support/system_plugin.py, registered by tests/conftest.py and shared with tests/browser."""
