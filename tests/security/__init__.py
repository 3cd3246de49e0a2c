"""Security suite (marker `security`): an authorization matrix generated from the OpenAPI document, schemathesis
against the gateway, and payload corpora in every string field. Runs in the integration tier's position."""
