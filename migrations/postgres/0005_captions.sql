-- Version 5: what people wrote about each picture (also kept in `record.facts`: title,
-- description, keywords, rating), as words for `caption:` and `keyword:`, and its stars for
-- `rating:`. Rows written before this
-- version have none: their files are read again by the next `index` (records carry the version
-- of the reader that made them, `facts_version`), which fills these columns.
ALTER TABLE images ADD COLUMN caption_words text[] NOT NULL DEFAULT '{}',
    ADD COLUMN keyword_words text[] NOT NULL DEFAULT '{}', ADD COLUMN rating smallint;
CREATE INDEX images_caption_words ON images USING gin (caption_words);
CREATE INDEX images_keyword_words ON images USING gin (keyword_words);
CREATE INDEX images_rating ON images (rating);
