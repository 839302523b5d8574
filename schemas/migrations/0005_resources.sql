-- Resources stored once (issue 15: half the write cost). A span's resource
-- (service, version, SDK, host, pod) is the same for every span a process
-- sends, and was stored, as JSONB parsed by the server, on every span.
-- Now the sink stores each distinct resource of a tenant once, keyed by a
-- 64-bit FNV-1a hash of its JSON text (observatory_schemas::resource_key),
-- and a span holds the key in `resource_id`. Spans written before keep
-- their `resource` column (now nullable); readers go through the view
-- `span_rows`, which gives every span its resource either way.
--
-- A resource row is a few hundred bytes and is never deleted: a tenant
-- with a million distinct resources (pods come and go) holds a few hundred
-- megabytes here.

CREATE TABLE IF NOT EXISTS resources (
    tenant      text   NOT NULL,
    id          bigint NOT NULL,
    attributes  jsonb  NOT NULL,
    PRIMARY KEY (tenant, id)
);

ALTER TABLE spans ADD COLUMN IF NOT EXISTS resource_id bigint;
ALTER TABLE spans ALTER COLUMN resource DROP NOT NULL;

-- Every span with its resource. PostgreSQL removes the join from queries
-- that do not read `resource` (the key is unique), and pushes conditions on
-- the span's columns down to `spans` and its partitions.
CREATE OR REPLACE VIEW span_rows AS
SELECT s.tenant, s.trace_id, s.span_id, s.parent_span_id, s.service, s.name, s.kind, s.start_time,
       s.duration_ns, s.status_code, s.status_message, s.scope_name, s.attributes,
       coalesce(r.attributes, s.resource) AS resource, s.events, s.links, s.received_at
  FROM spans s
  LEFT JOIN resources r ON r.tenant = s.tenant AND r.id = s.resource_id;
