-- The development key (GATEWAY_DEV_API_KEY, `make run`: key id `dev_<hash>`, name 'development key') is
-- provisioned with every scope, but only when it is first inserted. Keys made before the connectors scope
-- existed get it here; every other key keeps exactly the scopes it was given (least privilege: an operator
-- grants connectors:admin by creating a key with it).
ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY;
UPDATE api_keys SET scopes = scopes || ARRAY['connectors:admin']
WHERE name = 'development key' AND key_id LIKE 'dev\_%' AND tenant_id <> '_platform'
  AND NOT 'connectors:admin' = ANY (scopes);
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
