-- The peer's D1 catalog: one row per published content item, written by the
-- publish stage (Actorline's equivalent is its `content` catalog table).
CREATE TABLE IF NOT EXISTS content (
  id         TEXT PRIMARY KEY,
  version    INTEGER NOT NULL,
  title      TEXT NOT NULL,
  category   TEXT,
  tags       TEXT NOT NULL DEFAULT '[]',
  author     TEXT,
  status     TEXT NOT NULL,
  summary    TEXT,
  keywords   TEXT,
  entities   TEXT,
  sentiment  TEXT,
  analysis   TEXT,
  chunks     INTEGER NOT NULL,
  run_id     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS content_by_created ON content (created_at DESC, id);
