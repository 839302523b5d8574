-- LLM calls without a unique index of their own (issue 15: half the write
-- cost). A call row is written only together with its span, in the same
-- transaction, and only when that span was new (the sink's writer: the
-- direct COPY of spans fails as a whole on a span already stored, the
-- staged insert says which spans it added). So the spans' primary key alone
-- keeps the calls exactly-once, and the calls' own unique B-tree of random
-- trace ids, (tenant, trace id, span id, start), was a second random-leaf
-- insert for every call: about a fifth of the server's CPU in the drain
-- benchmark (BENCHMARKS.md).
--
-- Its only readers looked a call up by trace (the trace loader's join, the
-- full-text search of a trace's prompts): a hash index on the trace id
-- serves them, with 4-byte entries instead of 60-byte ones. On a large
-- table this migration builds that index once, with the table locked.

CREATE INDEX IF NOT EXISTS llm_calls_trace ON llm_calls USING hash (trace_id);
ALTER TABLE llm_calls DROP CONSTRAINT IF EXISTS llm_calls_pkey;

-- The calls' time index in ascending order: new calls are the latest, so
-- an insert lands on the rightmost leaf, which PostgreSQL reaches without
-- descending the tree (its fast path for increasing keys); in descending
-- order every insert descended from the root to the leftmost leaf. Reads
-- in either order scan it as well.
CREATE INDEX IF NOT EXISTS llm_calls_tenant_start ON llm_calls (tenant, start_time);
DROP INDEX IF EXISTS llm_calls_tenant_time;
