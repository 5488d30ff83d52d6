-- The visibility of the version whose text content_fts holds. A PUT that
-- widens an item (private -> tenant) updates `content` at once, while the
-- indexed text stays the older version's until the new one is indexed (or
-- its run fails, which drops it). Search and answers show that text only to a
-- reader of both: the stricter of this and the item's current visibility.
-- NULL (rows indexed before this column) means the item's current one.
ALTER TABLE content_fts_keys ADD COLUMN visibility TEXT;
