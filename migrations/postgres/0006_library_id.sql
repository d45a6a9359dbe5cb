-- Version 6: the library's own id (library_meta 'library_id'), made once. A server given
-- `--read-store` checks that the replica holds the same id: another database there would be
-- searched in the library's place, silently.
INSERT INTO library_meta (key, value) VALUES ('library_id', to_jsonb(gen_random_uuid()::text))
    ON CONFLICT (key) DO NOTHING;
