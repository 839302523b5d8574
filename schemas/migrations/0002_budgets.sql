-- Monthly cost budgets, set by a tenant's admins through the query API:
-- one for the whole tenant (scope 'tenant', service '') and one per service
-- (scope 'service'). Spend is read from the rollups; nothing here is
-- partitioned or expired.

CREATE TABLE IF NOT EXISTS budgets (
    tenant       text             NOT NULL,
    scope        text             NOT NULL CHECK (scope IN ('tenant', 'service')),
    service      text             NOT NULL,
    monthly_usd  double precision NOT NULL CHECK (monthly_usd >= 0),
    updated_at   timestamptz      NOT NULL,
    updated_by   text             NOT NULL,
    PRIMARY KEY (tenant, scope, service)
);
