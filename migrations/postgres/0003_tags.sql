-- Version 3: zero-shot tags. Each picture's tags (also kept in `record`) for `tag:beach`; the
-- label set itself is the library_meta row 'tagging'.
ALTER TABLE images ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
CREATE INDEX images_tags ON images USING gin (tags);
