-- Version 7: the words and folders that filters match are in Unicode's composed form (NFC), so
-- that `name:café` finds a file a Mac named with "e" and a combining accent. The rows whose words
-- that changes are derived again by imgsearch itself, in this same transaction, as it derives them
-- when it writes a picture (`compose_filter_words` in src/store/postgres.rs): SQL has no copy of
-- its word splitting.
SELECT 1;
