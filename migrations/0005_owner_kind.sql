-- The owner's principal kind ('api_key', 'user', 'operator'): a key's id
-- and a user's JWT `sub` are both subjects, so the owner is the subject of
-- its kind. Rows written before it was recorded are a key's when the owner
-- has a key id's form (32 lowercase hex digits), as the content actor reads
-- its own copy of them (`Ownership::kind_of_owner`); '' otherwise: owned by
-- the subject alone.
ALTER TABLE content ADD COLUMN owner_kind TEXT NOT NULL DEFAULT '';
UPDATE content SET owner_kind = 'api_key'
  WHERE owner_kind = '' AND length(owner) = 32 AND owner NOT GLOB '*[^0-9a-f]*';
