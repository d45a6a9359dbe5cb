-- The PostgreSQL backend's schema, version 1. Applied by `imgsearch` on connect (under an
-- advisory lock, so that several processes starting at once apply it once) and recorded in
-- `imgsearch_schema`. The vector index is created when the library's model (and so the
-- embedding dimension) is first recorded: see `check_model` in src/store/postgres.rs.

CREATE EXTENSION IF NOT EXISTS vector;

-- The library's own facts: its model (key 'model').
CREATE TABLE library_meta (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);

CREATE SEQUENCE image_ids;

-- One row per indexed picture. `record` is the catalog record (as the embedded backend keeps
-- it); the columns after `embedding` are derived from it for the filters.
CREATE TABLE images (
    id bigint PRIMARY KEY,
    path bytea NOT NULL UNIQUE,
    hash text NOT NULL,
    record jsonb NOT NULL,
    embedding vector NOT NULL,
    -- Lower-case words of the path, of the file name and of the camera (`path:`, `name:`, `camera:`).
    path_words text[] NOT NULL,
    name_words text[] NOT NULL,
    camera_words text[] NOT NULL,
    -- Every ancestor folder (`folder:/home/me/Photos`).
    folders text[] NOT NULL,
    format text NOT NULL,
    -- When taken, Unix seconds, and its hour of the day (0-23), if the photo says.
    taken bigint,
    hour smallint
);
CREATE INDEX images_hash ON images (hash);
CREATE INDEX images_path_words ON images USING gin (path_words);
CREATE INDEX images_name_words ON images USING gin (name_words);
CREATE INDEX images_camera_words ON images USING gin (camera_words);
CREATE INDEX images_folders ON images USING gin (folders);
CREATE INDEX images_format ON images (format);
CREATE INDEX images_taken ON images (taken DESC NULLS LAST, id);
CREATE INDEX images_hour ON images (hour);

-- Files that were not indexed, and why (kept so that an unchanged bad file is not read again).
CREATE TABLE skipped (
    path bytea PRIMARY KEY,
    record jsonb NOT NULL,
    ignored boolean NOT NULL
);

-- Every folder `index` was pointed at, with the options of its latest run.
CREATE TABLE roots (
    path bytea PRIMARY KEY,
    root jsonb NOT NULL
);

-- The summary of every finished `index` run.
CREATE TABLE runs (
    id bigserial PRIMARY KEY,
    finished_at timestamptz NOT NULL DEFAULT now(),
    summary jsonb NOT NULL
);
