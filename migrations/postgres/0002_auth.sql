-- Users (Argon2 password hashes) and API tokens (hashes of their secrets) of `imgsearch serve`,
-- shared by every server of the library: one JSON document (see src/auth.rs), changed rarely,
-- under a row lock.
CREATE TABLE auth (
    id integer PRIMARY KEY CHECK (id = 1),
    data jsonb NOT NULL
);
INSERT INTO auth (id, data) VALUES (1, '{}');
