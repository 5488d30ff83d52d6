-- Actorline catalog. Actors own their state; D1 holds what must be listed or
-- searched across actors: the registry, the content catalog, runs and dead
-- letters, stage timings for metrics, the search log and the FTS5 index.

CREATE TABLE IF NOT EXISTS actors (
  kind       TEXT NOT NULL,
  id         TEXT NOT NULL,
  status     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS actors_by_kind_status ON actors (kind, status, updated_at DESC, id);
CREATE INDEX IF NOT EXISTS actors_by_updated ON actors (updated_at DESC, kind, id);

CREATE TABLE IF NOT EXISTS content (
  id         TEXT PRIMARY KEY,
  version    INTEGER NOT NULL,
  title      TEXT NOT NULL,
  category   TEXT,
  tags       TEXT NOT NULL DEFAULT '[]',
  author     TEXT,
  status     TEXT NOT NULL,
  summary    TEXT,
  run_id     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS content_by_created ON content (created_at DESC, id);
CREATE INDEX IF NOT EXISTS content_by_status ON content (status, created_at DESC, id);
CREATE INDEX IF NOT EXISTS content_by_category ON content (category, created_at DESC, id);

CREATE TABLE IF NOT EXISTS runs (
  id           TEXT PRIMARY KEY,
  content_id   TEXT NOT NULL,
  version      INTEGER NOT NULL,
  status       TEXT NOT NULL,
  failed_stage TEXT,
  error_class  TEXT,
  error        TEXT,
  attempts     INTEGER,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  finished_at  INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, updated_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_content ON runs (content_id);

CREATE TABLE IF NOT EXISTS stage_timings (
  run_id      TEXT NOT NULL,
  stage       TEXT NOT NULL,
  status      TEXT NOT NULL,
  attempts    INTEGER NOT NULL,
  duration_ms INTEGER,
  finished_at INTEGER NOT NULL,
  PRIMARY KEY (run_id, stage)
);
CREATE INDEX IF NOT EXISTS stage_timings_recent ON stage_timings (finished_at DESC);

CREATE TABLE IF NOT EXISTS search_log (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  q        TEXT NOT NULL,
  k        INTEGER NOT NULL,
  category TEXT,
  mode     TEXT NOT NULL,
  results  INTEGER NOT NULL,
  took_ms  INTEGER NOT NULL,
  at       INTEGER NOT NULL
);

-- Keyword search. content_id is stored but not tokenized.
CREATE VIRTUAL TABLE IF NOT EXISTS content_fts USING fts5 (
  content_id UNINDEXED,
  title,
  body,
  tags,
  category UNINDEXED,
  tokenize = 'porter unicode61'
);
