-- Event ids are unique within their ingest key, not across keys (shared/CONTRACT.md): a client's
-- own `id` (or a collector's UUID `messageId`/`uuid`) is chosen by the client, so two keys may
-- send the same one, and each is its own event. Before this, the second key's event was
-- answered 2xx and then dropped by `ON CONFLICT (id)`.
--
-- Every row already has a distinct id, so every (key_id, id) is distinct too: this cannot fail
-- on the rows a table holds. Rebuilding the key locks the table for the length of one index
-- build; deploy with the consumer paused (docs/deploy.md, section 9).
--
-- key_id comes first: every lookup of an id names its key (an id alone means nothing), and a
-- key's events are then together. The other indexes never held id and stay as they are.
ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (key_id, id);

-- `ON CONFLICT (key_id, id)` reads both columns, so a writer role granted only `SELECT (id)`
-- (docs/deploy.md, section 1d) now needs `SELECT (key_id)` as well, or every insert is refused.
-- Whoever could read id may read key_id: it is the public name of a key, never the key.
DO $$
DECLARE
    reader text;
BEGIN
    FOR reader IN
        SELECT DISTINCT CASE acl.grantee WHEN 0 THEN 'PUBLIC' ELSE acl.grantee::regrole::text END
          FROM pg_attribute att, aclexplode(att.attacl) acl
         WHERE att.attrelid = 'events'::regclass
           AND att.attname = 'id'
           AND acl.privilege_type = 'SELECT'
    LOOP
        EXECUTE format('GRANT SELECT (key_id) ON events TO %s', reader);
    END LOOP;
END
$$;
