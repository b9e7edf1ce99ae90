-- Tenants, their tokens, budgets, and the usage ledger.
-- Money is stored as integer nano-USD (1e-9 USD) so sums are exact; prices are USD per 1M tokens.
-- No secret is stored here: tokens only as sha256 hashes; end-user signing keys are derived from
-- the SIGNING_SECRET Worker secret and a per-tenant version number.

CREATE TABLE tenants (
  id                  TEXT PRIMARY KEY,                 -- [a-z0-9][a-z0-9_-]{0,62}
  name                TEXT NOT NULL,
  status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  allowed_models      TEXT,                             -- JSON array of public model names; NULL = all
  allowed_origins     TEXT,                             -- JSON array of origins for browsers; NULL = none
  rpm_limit           INTEGER,                          -- requests per minute, tenant-wide; NULL = none
  tpm_limit           INTEGER,                          -- tokens per minute, tenant-wide
  user_rpm_limit      INTEGER,                          -- per end user
  user_tpm_limit      INTEGER,
  signing_key_version INTEGER NOT NULL DEFAULT 1,       -- bump to rotate the end-user signing key
  created_ms          INTEGER NOT NULL,
  updated_ms          INTEGER NOT NULL
);

CREATE TABLE tokens (
  id            TEXT PRIMARY KEY,                       -- tok_<hex>
  tenant_id     TEXT NOT NULL REFERENCES tenants (id),
  hash          TEXT NOT NULL UNIQUE,                   -- sha256 hex of the whole token
  prefix        TEXT NOT NULL,                          -- the first characters, for humans
  name          TEXT NOT NULL DEFAULT '',
  created_ms    INTEGER NOT NULL,
  last_used_ms  INTEGER,
  revoked_ms    INTEGER
);
CREATE INDEX tokens_by_tenant ON tokens (tenant_id, created_ms);

CREATE TABLE budgets (
  tenant_id        TEXT NOT NULL REFERENCES tenants (id),
  period           TEXT NOT NULL CHECK (period IN ('day', 'month', 'total')),
  limit_nanos      INTEGER NOT NULL CHECK (limit_nanos >= 0),
  alert_threshold  REAL NOT NULL DEFAULT 0.8 CHECK (alert_threshold > 0 AND alert_threshold <= 1),
  webhook_url      TEXT,
  PRIMARY KEY (tenant_id, period)
);

-- One row per answered request, idempotent by request id.
CREATE TABLE usage_ledger (
  request_id         TEXT PRIMARY KEY,
  tenant_id          TEXT NOT NULL,
  end_user           TEXT NOT NULL DEFAULT '',
  route              TEXT NOT NULL,
  provider           TEXT NOT NULL DEFAULT '',
  model              TEXT NOT NULL DEFAULT '',
  prompt_tokens      INTEGER NOT NULL DEFAULT 0,
  completion_tokens  INTEGER NOT NULL DEFAULT 0,
  cached_tokens      INTEGER NOT NULL DEFAULT 0,
  reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
  cost_nanos         INTEGER,                           -- NULL = unpriced (never guessed)
  cache_hit          INTEGER NOT NULL DEFAULT 0,
  latency_ms         INTEGER NOT NULL DEFAULT 0,
  ts_ms              INTEGER NOT NULL
);
CREATE INDEX ledger_by_tenant_time ON usage_ledger (tenant_id, ts_ms);

-- Daily aggregates for fast reads, maintained by a trigger: a duplicate ledger insert
-- (INSERT OR IGNORE) fires nothing, so aggregates stay exact.
CREATE TABLE usage_daily (
  tenant_id          TEXT NOT NULL,
  day                TEXT NOT NULL,                     -- YYYY-MM-DD (UTC)
  model              TEXT NOT NULL,
  requests           INTEGER NOT NULL DEFAULT 0,
  prompt_tokens      INTEGER NOT NULL DEFAULT 0,
  completion_tokens  INTEGER NOT NULL DEFAULT 0,
  cached_tokens      INTEGER NOT NULL DEFAULT 0,
  reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
  cost_nanos         INTEGER NOT NULL DEFAULT 0,
  unpriced_requests  INTEGER NOT NULL DEFAULT 0,
  cache_hits         INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, day, model)
);

CREATE TRIGGER usage_ledger_daily AFTER INSERT ON usage_ledger
BEGIN
  INSERT INTO usage_daily (tenant_id, day, model, requests, prompt_tokens, completion_tokens,
                           cached_tokens, reasoning_tokens, cost_nanos, unpriced_requests, cache_hits)
  VALUES (NEW.tenant_id, strftime('%Y-%m-%d', NEW.ts_ms / 1000, 'unixepoch'), NEW.model, 1,
          NEW.prompt_tokens, NEW.completion_tokens, NEW.cached_tokens, NEW.reasoning_tokens,
          COALESCE(NEW.cost_nanos, 0), NEW.cost_nanos IS NULL, NEW.cache_hit)
  ON CONFLICT (tenant_id, day, model) DO UPDATE SET
    requests          = requests + 1,
    prompt_tokens     = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cached_tokens     = cached_tokens + excluded.cached_tokens,
    reasoning_tokens  = reasoning_tokens + excluded.reasoning_tokens,
    cost_nanos        = cost_nanos + excluded.cost_nanos,
    unpriced_requests = unpriced_requests + excluded.unpriced_requests,
    cache_hits        = cache_hits + excluded.cache_hits;
END;
