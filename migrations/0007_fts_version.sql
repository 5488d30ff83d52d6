-- The version whose text content_fts holds. While a newer version runs,
-- its vectors are indexed before its text replaces the older one's here,
-- so a vector hit's chunk number names a passage of this text only when
-- the versions agree. NULL (rows indexed before this column): the item's
-- version once it is `indexed`, not known while one runs.
ALTER TABLE content_fts_keys ADD COLUMN version INTEGER;
