-- Embedding-model generations (docs/embedding-generations.md): every chunk vector records its model, in
-- chunk_vectors (one row per chunk and model), which dense search reads. A generation is the index of one model over
-- every chunk: built beside the live one by re-embedding the stored chunk texts, then switched to in one
-- transaction, and kept (retired) for a rollback.
--
-- Expand only (docs/releases.md): chunks.embedding stays for the previous release, which reads it during a
-- blue-green switch and after a rollback; this release still fills it with the live generation's vector while that
-- one has 384 dimensions, and NULL otherwise. The contract migration of a later release drops it.

-- Platform-wide (one index, many tenants): every row belongs to the reserved `_platform` tenant, which no purge
-- touches; every role granted the table reads all of it.
CREATE TABLE embedding_generations (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text NOT NULL DEFAULT '_platform' CHECK (tenant_id = '_platform'),
    -- The model's recorded name (ChunksEmbedded.model), e.g. sentence-transformers/all-MiniLM-L6-v2.
    model         text NOT NULL,
    dimensions    integer NOT NULL CHECK (dimensions > 0),
    state         text NOT NULL CHECK (state IN ('building', 'live', 'retired', 'failed')),
    chunks_total  bigint NOT NULL DEFAULT 0,
    chunks_done   bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    live_at       timestamptz,
    retired_at    timestamptz
);
-- At most one live and one building generation; at most one generation per model that is not failed.
CREATE UNIQUE INDEX embedding_generations_one_live ON embedding_generations ((true)) WHERE state = 'live';
CREATE UNIQUE INDEX embedding_generations_one_building ON embedding_generations ((true)) WHERE state = 'building';
CREATE UNIQUE INDEX embedding_generations_model ON embedding_generations (model) WHERE state <> 'failed';
ALTER TABLE embedding_generations ENABLE ROW LEVEL SECURITY;
ALTER TABLE embedding_generations FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_rows ON embedding_generations
    USING (tenant_id = '_platform') WITH CHECK (tenant_id = '_platform');

CREATE TABLE chunk_vectors (
    tenant_id  text NOT NULL,
    -- Deleting a chunk (re-index, delete, purge) takes its vectors with it.
    chunk_key  bigint NOT NULL REFERENCES chunks (chunk_key) ON DELETE CASCADE,
    model      text NOT NULL,
    -- Untyped: each model has its own size; the HNSW indexes below cast to it.
    embedding  vector NOT NULL,
    PRIMARY KEY (tenant_id, model, chunk_key)
);
-- As chunks.embedding was: vectors stay in the heap row, so exact scans of small tenants read no TOAST pages.
ALTER TABLE chunk_vectors ALTER COLUMN embedding SET STORAGE PLAIN;
CREATE INDEX chunk_vectors_chunk ON chunk_vectors (chunk_key);
SELECT ragstream_isolate_tenant('chunk_vectors');

-- The vectors indexed so far are copied over under their chunk's model, tenant by tenant (row-level security binds
-- the owner too); generation 1 is the model that wrote most of them, live. The owner reads every tenant's chunks
-- and vectors from now on: the copy, and the re-embedding functions below, which return only keys and texts.
CREATE POLICY generation_backfill ON chunks FOR SELECT TO ragstream_owner USING (true);
CREATE POLICY generation_backfill ON chunk_vectors FOR SELECT TO ragstream_owner USING (true);
DO $$
DECLARE
    tenant text;
BEGIN
    FOR tenant IN SELECT DISTINCT c.tenant_id FROM chunks c LOOP
        PERFORM set_config('app.tenant_id', tenant, true);
        INSERT INTO chunk_vectors (tenant_id, chunk_key, model, embedding)
        SELECT c.tenant_id, c.chunk_key, c.model, c.embedding FROM chunks c WHERE c.tenant_id = tenant;
    END LOOP;
    PERFORM set_config('app.tenant_id', '', true);
END
$$;
INSERT INTO embedding_generations (model, dimensions, state, chunks_total, chunks_done, live_at)
SELECT coalesce((SELECT c.model FROM chunks c GROUP BY c.model ORDER BY count(*) DESC LIMIT 1),
                'sentence-transformers/all-MiniLM-L6-v2'),
       384, 'live', n, n, now()
FROM (SELECT count(*) AS n FROM chunks) AS counted;
ALTER TABLE chunks ALTER COLUMN embedding DROP NOT NULL;

-- One HNSW index per registry model (a new model = a migration adding its index), built after the copy; queries
-- name the same cast and model literally, so the planner can use them.
CREATE INDEX chunk_vectors_minilm_hnsw ON chunk_vectors USING hnsw ((embedding::vector(384)) vector_cosine_ops)
    WHERE model = 'sentence-transformers/all-MiniLM-L6-v2';
CREATE INDEX chunk_vectors_wordllama_hnsw ON chunk_vectors USING hnsw ((embedding::vector(256)) vector_cosine_ops)
    WHERE model = 'dleemiller/word-llama-l2-supercat@256';

-- Re-embedding walks every tenant's chunks that lack a vector of `model`, in chunk_key order (a keyset page).
CREATE FUNCTION ragstream_chunks_missing_vector(model_name text, after_key bigint, max_rows integer)
RETURNS TABLE (tenant_id text, chunk_key bigint, text text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.tenant_id, c.chunk_key, c.text FROM public.chunks c
    WHERE c.chunk_key > after_key
      AND NOT EXISTS (SELECT 1 FROM public.chunk_vectors v
                      WHERE v.chunk_key = c.chunk_key AND v.model = model_name)
    ORDER BY c.chunk_key
    LIMIT least(greatest(max_rows, 0), 4096)
$$;
-- (chunks in the index, chunks without a vector of `model`): a generation's progress, and whether it is complete.
CREATE FUNCTION ragstream_generation_progress(model_name text)
RETURNS TABLE (total bigint, missing bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*),
           count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM public.chunk_vectors v
                                              WHERE v.chunk_key = c.chunk_key AND v.model = model_name))
    FROM public.chunks c
$$;
REVOKE ALL ON FUNCTION ragstream_chunks_missing_vector(text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ragstream_generation_progress(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragstream_chunks_missing_vector(text, bigint, integer) TO ragstream_retrieve;
GRANT EXECUTE ON FUNCTION ragstream_generation_progress(text) TO ragstream_retrieve;

-- retrieve owns the index and its generations; embed reads which models to serve.
GRANT SELECT, INSERT ON chunk_vectors TO ragstream_retrieve;
GRANT SELECT, INSERT, UPDATE ON embedding_generations TO ragstream_retrieve;
GRANT SELECT ON embedding_generations TO ragstream_embed;
