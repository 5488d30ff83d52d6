-- Which items each answer quotes. Deleting an item erases what answers
-- quoted of it (DESIGN.md, integrity: only a tombstone remains): the
-- deletion finds them here. A row is written only while the item's catalog
-- row exists, and the deletion reads these rows only once that row is gone,
-- so no answer that quotes a deleted item is missed.
CREATE TABLE IF NOT EXISTS answer_sources (
  content_id TEXT NOT NULL,
  answer_id  TEXT NOT NULL,
  PRIMARY KEY (content_id, answer_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS answer_sources_by_answer ON answer_sources (answer_id);
