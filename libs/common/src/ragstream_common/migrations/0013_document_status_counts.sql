-- The gateway's gauge of documents by status per tenant (ragstream_documents{tenant_id,status}) counts every
-- tenant's documents, which row-level security forbids to the gateway: only through this function, which returns
-- counts per tenant and status and nothing of the documents themselves.
CREATE POLICY status_counts ON documents FOR SELECT TO ragstream_owner USING (true);
CREATE FUNCTION ragstream_document_status_counts()
RETURNS TABLE (tenant_id text, status text, count bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT d.tenant_id, d.status, count(*) FROM public.documents d GROUP BY d.tenant_id, d.status $$;
ALTER FUNCTION ragstream_document_status_counts() OWNER TO ragstream_owner;
REVOKE ALL ON FUNCTION ragstream_document_status_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragstream_document_status_counts() TO ragstream_gateway;
