-- Schema bookkeeping. Tenants, tokens, budgets and the usage ledger arrive in later migrations.
CREATE TABLE IF NOT EXISTS schema_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT OR IGNORE INTO schema_meta (key, value) VALUES ('created_by', 'switchyard');
