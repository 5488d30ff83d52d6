-- Finding one document's row in content_fts by content_id scanned the whole
-- table: FTS5 columns, UNINDEXED or not, have no b-tree to look up. This
-- table gives each content id a fixed FTS rowid, so replacing, deleting and
-- fetching a document's text (the search results' titles and snippets) are
-- primary-key lookups whatever the corpus size.
CREATE TABLE IF NOT EXISTS content_fts_keys (
  fts_rowid  INTEGER PRIMARY KEY,
  content_id TEXT NOT NULL UNIQUE
);
INSERT OR IGNORE INTO content_fts_keys (fts_rowid, content_id) SELECT rowid, content_id FROM content_fts;
