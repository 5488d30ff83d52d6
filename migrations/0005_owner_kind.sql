-- The owner's principal kind ('api_key', 'user', 'operator'): a key's id
-- and a user's JWT `sub` are both subjects, so the owner is the subject of
-- its kind. '' for rows written before it was recorded: owned by the
-- subject alone, as the content actor's own copy of those items says.
ALTER TABLE content ADD COLUMN owner_kind TEXT NOT NULL DEFAULT '';
