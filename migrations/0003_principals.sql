-- Principals and tenants (DESIGN.md, "Principals and access").

-- API keys: only the SHA-256 of a key is stored; a revoked key keeps its row.
CREATE TABLE IF NOT EXISTS api_keys (
  key_id       TEXT PRIMARY KEY,
  tenant       TEXT NOT NULL,
  name         TEXT NOT NULL,
  scopes       TEXT NOT NULL,
  rate_per_min INTEGER,
  key_hash     TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  revoked_at   INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant, created_at DESC);

-- Every item's tenant, owner and visibility. Rows written before tenants
-- existed stay as open as they were (public, in the "legacy" tenant).
ALTER TABLE content ADD COLUMN tenant TEXT NOT NULL DEFAULT 'legacy';
ALTER TABLE content ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE content ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
CREATE INDEX IF NOT EXISTS content_by_tenant ON content (tenant, created_at DESC, id);
CREATE INDEX IF NOT EXISTS content_by_visibility ON content (visibility, created_at DESC, id);

-- The keyword index gains a `scope` column holding one token per document
-- (its tenant's, or the public one; see domain::principal::fts_scope_token),
-- so a tenant's MATCH only ever considers its own and public documents.
-- FTS5 tables cannot add columns: rebuild, keeping rowids (content_fts_keys).
CREATE VIRTUAL TABLE IF NOT EXISTS content_fts_scoped USING fts5 (
  content_id UNINDEXED,
  title,
  body,
  tags,
  category UNINDEXED,
  scope,
  tokenize = 'porter unicode61'
);
INSERT INTO content_fts_scoped (rowid, content_id, title, body, tags, category, scope)
  SELECT rowid, content_id, title, body, tags, category, 'scopepublic0' FROM content_fts;
DROP TABLE content_fts;
ALTER TABLE content_fts_scoped RENAME TO content_fts;

-- Search log: who searched is not kept; the log is pruned by age and count.
CREATE INDEX IF NOT EXISTS search_log_by_at ON search_log (at);
CREATE INDEX IF NOT EXISTS runs_by_finished ON runs (status, finished_at);
