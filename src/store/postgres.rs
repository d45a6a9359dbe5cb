//! The PostgreSQL backend (`--store postgres://…`): records, embeddings (pgvector, with an HNSW
//! index), filter fields, skipped files and run history in one database, which several `index`
//! and `serve` processes on several hosts share. Its schema is `migrations/postgres/*.sql`,
//! applied on connect; every SQL statement it runs is in this file.
//!
//! Thumbnails stay in a local cache folder. Every write is one transaction, so a `kill -9` of
//! any process at any moment leaves whole batches only, and a re-run finishes the work.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use pgvector::Vector;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{Json, ToSql, Type};
use postgres::{NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;

use super::catalog::{
    path_bytes, stored_bytes, Change, ImageId, ImageRecord, IndexedRoot, ModelInfo, SkipRecord, Tagging,
};
use super::library::{composed, words, Filter, Known, Library, Lookup};
use super::{Stats, EXACT_BELOW};
use crate::error::{Error, Result};
use crate::geo::Area;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;
type Connection = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// Schema versions, in order: `(version, SQL)`.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, include_str!("../../migrations/postgres/0002_auth.sql")),
    (3, include_str!("../../migrations/postgres/0003_tags.sql")),
    (4, include_str!("../../migrations/postgres/0004_places.sql")),
    (5, include_str!("../../migrations/postgres/0005_captions.sql")),
    (6, include_str!("../../migrations/postgres/0006_library_id.sql")),
    (7, include_str!("../../migrations/postgres/0007_composed_words.sql")),
];

/// The version from which filter words and folders are composed (NFC, see [`composed`]).
const COMPOSED_WORDS: i32 = 7;

/// Taken by whoever applies migrations or records the model: processes starting at once on an
/// empty database do it once.
const SCHEMA_LOCK: i64 = 0x696d_6773_6561_7263; // "imgsearc"

/// Taken by a bulk load to drop or build the vector index: loaders starting at once must not
/// drop an index another one is building. Not [`SCHEMA_LOCK`]: a build takes minutes, and every
/// process takes that one to connect.
const VECTOR_INDEX_LOCK: i64 = 0x696d_6773_7665_6374; // "imgsvect"

/// How widely pgvector's HNSW build looks for each picture's neighbours (its default is 64). Text
/// queries sit far from every picture (CLIP's modality gap) and find their true best matches only
/// on a well-connected graph: at 1M CLIP-like pictures, text recall@10 0.79 at `ef_search` 400
/// on a graph built with 64, 0.965 on one built with 200 (which takes 2.4× as long to build).
const EF_CONSTRUCTION: usize = 200;
/// Candidates the HNSW index hands over for exact re-scoring; pgvector's `hnsw.ef_search`. On
/// a graph built with [`EF_CONSTRUCTION`], text recall@10 0.965 at 1M pictures (p50 9.7 ms);
/// benches/README.md has the table. `IMGSEARCH_PG_EF_SEARCH` overrides it.
const EF_SEARCH: usize = 400;
/// The same for a vector index that an older imgsearch built with `ef_construction` 64: twice
/// as wide for the same recall (0.96 at 100k). `imgsearch repair` rebuilds such an index.
const EF_SEARCH_OLD_INDEX: usize = 800;
/// The longest path kept: PostgreSQL's unique index on `path` holds keys of up to 2,704 bytes,
/// and a video's moments add their time to their file's path.
const LONGEST_PATH: usize = 2_000;
/// The runs' summaries kept (the latest one is `stats`' last run; the others are history).
const KEPT_RUNS: i64 = 1_000;
/// pgvector's limit on `hnsw.ef_search`.
const EF_SEARCH_MAX: usize = 1000;

/// Rows fetched per round trip when walking the whole library (export, repair, rescans).
const PAGE: i64 = 5_000;

/// Ids taken from the database's sequence at once: one round trip per block instead of one per
/// picture. Those a process leaves unused are gaps, which ids may have.
const ID_BLOCK: i64 = 256;

/// How long a `--read-store` that does not hold the library yet is given to replay it (a
/// replica shows a new library within a second on a LAN).
const REPLICA_CATCH_UP: Duration = Duration::from_secs(5);

/// Connections per process: the server's blocking threads share them.
const POOL_SIZE: u32 = 16;

/// How long a connection may take to be made, in all, unless the URL's `connect_timeout` says.
/// tokio-postgres's own timeout covers only the TCP connect: a server that accepts and then
/// never answers (a frozen host, another service on the port) would hang the command for good.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// A handle on the library; clones share its connection pool (the indexer's workers get one).
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// `--read-store`: a streaming replica for searches and listings, with its location.
    replica: Option<(Pool, String)>,
    /// The URL without its password, for messages.
    location: String,
    cache_dir: PathBuf,
    /// The embedding dimension, once the library has a model (the vector index is built on it).
    dim: OnceLock<usize>,
    /// The search breadth (`EF_SEARCH`, or the environment's).
    ef_search: usize,
    /// A bulk load into an empty library dropped the vector index, to build it once at the end.
    index_deferred: bool,
    /// Ids taken from the sequence and not yet given ([`ID_BLOCK`]), shared by clones.
    spare_ids: Arc<Mutex<VecDeque<ImageId>>>,
}

fn db_error(location: &str, e: impl std::fmt::Display + 'static) -> Error {
    // A postgres::Error displays as "db error"; what the server said is inside it.
    let server_said = (&e as &dyn std::any::Any).downcast_ref::<postgres::Error>().and_then(|e| e.as_db_error());
    let reason = match server_said {
        Some(db) => match db.hint() {
            Some(hint) => format!("{} (hint: {hint})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    };
    Error::Database { location: location.to_string(), reason }
}

/// Why a connection could not be made, as the server or the client library said it (a
/// `postgres::Error` displays as "db error" alone).
fn cannot_connect(location: &str, e: &postgres::Error) -> Error {
    let reason = match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => db.message().to_string(),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    };
    Error::Database {
        location: location.to_string(),
        reason: format!(
            "cannot connect ({reason}); is the server running, and the URL's user, password and database right?"
        ),
    }
}

/// Refuses a URL whose host took in the end of a password: an `@` in it must be escaped.
fn check_host(config: &postgres::Config, location: &str) -> Result<()> {
    match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) if host.contains('@') => Err(Error::Database {
            location: location.to_string(),
            reason: "the URL holds two `@`: write an `@` in the user or password as %40".into(),
        }),
        _ => Ok(()),
    }
}

/// One connection made within [`CONNECT_WITHIN`]. The attempt runs on its own thread, which a
/// server that never answers holds (it ends with the process).
fn connect_within(config: &postgres::Config, location: &str) -> Result<postgres::Client> {
    let within = time_to_connect(config);
    let (sent, made) = std::sync::mpsc::channel();
    let attempt = config.clone();
    std::thread::spawn(move || {
        // Nobody waits any more after the timeout: the connection, if made, is dropped.
        let _ = sent.send(attempt.connect(NoTls));
    });
    match made.recv_timeout(within) {
        Ok(made) => made.map_err(|e| cannot_connect(location, &e)),
        Err(_) => Err(Error::Database {
            location: location.to_string(),
            reason: format!(
                "the server took the connection but did not answer in {} s; is this port PostgreSQL's, \
                 and is its host frozen or overloaded?",
                within.as_secs()
            ),
        }),
    }
}

fn time_to_connect(config: &postgres::Config) -> Duration {
    // libpq reads `connect_timeout=0` as "wait for ever"; a command that never ends helps nobody.
    config.get_connect_timeout().copied().filter(|t| !t.is_zero()).unwrap_or(CONNECT_WITHIN)
}

/// The URL as people should see it: without its password.
fn without_password(config: &postgres::Config) -> String {
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let host = match config.get_hosts().first() {
        // A password holding an unescaped `@` leaves its end in the host: never shown.
        Some(postgres::config::Host::Tcp(host)) => host.rsplit('@').next().unwrap_or_default().to_string(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().map(|p| format!(":{p}")).unwrap_or_default();
    format!("postgres://{user}{host}{port}/{}", config.get_dbname().unwrap_or(""))
}

/// One connection to `url` for rare reads and writes outside a library's pool: users and tokens
/// (the library, opened first, has applied the schema), model spaces' records.
fn one_connection(url: &str) -> Result<(postgres::Client, String)> {
    let mut config: postgres::Config =
        url.parse().map_err(|e| db_error(url.split('@').next_back().unwrap_or(url), e))?;
    config.application_name("imgsearch");
    let location = without_password(&config);
    check_host(&config, &location)?;
    let client = connect_within(&config, &location)?;
    Ok((client, location))
}

/// Whether the database at `url` holds a library (its first space's tables), found out without
/// creating anything.
pub(super) fn holds_a_library(url: &str) -> Result<bool> {
    let (mut client, location) = one_connection(url)?;
    let row =
        client.query_one("SELECT to_regclass('library_meta') IS NOT NULL", &[]).map_err(|e| db_error(&location, e))?;
    Ok(row.get(0))
}

/// The users and tokens stored in the library at `url`.
pub fn load_auth(url: &str) -> Result<crate::auth::AuthData> {
    let (mut client, location) = one_connection(url)?;
    let row = client.query_one("SELECT data FROM auth WHERE id = 1", &[]).map_err(|e| db_error(&location, e))?;
    serde_json::from_value(row.get::<_, Json<serde_json::Value>>(0).0).map_err(|e| db_error(&location, e))
}

/// Changes the users and tokens of the library at `url` in one transaction, under the row's lock.
pub fn update_auth<T>(url: &str, change: impl FnOnce(&mut crate::auth::AuthData) -> Result<T>) -> Result<T> {
    let (mut client, location) = one_connection(url)?;
    let err = |e: postgres::Error| db_error(&location, e);
    let mut tx = client.transaction().map_err(err)?;
    let row = tx.query_one("SELECT data FROM auth WHERE id = 1 FOR UPDATE", &[]).map_err(err)?;
    let mut data: crate::auth::AuthData =
        serde_json::from_value(row.get::<_, Json<serde_json::Value>>(0).0).map_err(|e| db_error(&location, e))?;
    let out = change(&mut data)?;
    let json = serde_json::to_value(&data).expect("auth data serialises");
    tx.execute("UPDATE auth SET data = $1 WHERE id = 1", &[&Json(json)]).map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(out)
}

/// A pool of connections to `url`, and the URL without its password; with `schema` (a model space after the first, see
/// `spaces.rs`), its tables are the schema's and the extensions still public's.
fn connection_pool(url: &str, schema: Option<&str>) -> Result<(Pool, String)> {
    let mut config: postgres::Config = url.parse().map_err(|e| Error::Database {
        location: url.split('@').next_back().unwrap_or(url).to_string(),
        reason: format!("not a usable PostgreSQL URL ({e}); write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE"),
    })?;
    // Named in pg_stat_activity, for operators (and for the tests that check who reads where).
    config.application_name("imgsearch");
    config.notice_callback(forward_notice);
    let mut location = without_password(&config);
    check_host(&config, &location)?;
    if let Some(schema) = schema {
        // After the URL's own options (e.g. `?options=-c%20maintenance_work_mem%3D4GB`), kept.
        let options = format!("{} -c search_path={schema},public", config.get_options().unwrap_or_default());
        config.options(options.trim_start());
        location = format!("{location} (model space {schema})");
    }
    let pool = r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(1))
        .connection_timeout(time_to_connect(&config))
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build(PostgresConnectionManager::new(config.clone(), NoTls))
        // The pool keeps only "timed out"; one more attempt says why it failed.
        .map_err(|_| match connect_within(&config, &location) {
            Err(why) => why,
            Ok(_) => db_error(
                &location,
                format!("cannot connect in {} s; is the server overloaded?", time_to_connect(&config).as_secs()),
            ),
        })?;
    Ok((pool, location))
}

/// The record of a model space (see `spaces.rs`): the comment on its `library_meta` table, in
/// `schema` or else in the first space. `None` before the space's tables exist.
pub(super) fn space_record(url: &str, schema: Option<&str>) -> Result<Option<String>> {
    let (mut client, location) = one_connection(url)?;
    let table = match schema {
        Some(schema) => format!("{schema}.library_meta"),
        None => "library_meta".to_string(),
    };
    let row = client
        .query_one("SELECT obj_description(to_regclass($1), 'pg_class')", &[&table])
        .map_err(|e| db_error(&location, e))?;
    Ok(row.get(0))
}

/// Every schema whose name starts with `prefix` and holds a library, with its space record.
pub(super) fn space_records(url: &str, prefix: &str) -> Result<Vec<(String, Option<String>)>> {
    let (mut client, location) = one_connection(url)?;
    let rows = client
        .query(
            "SELECT n.nspname::text, obj_description(c.oid, 'pg_class') FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'library_meta' AND starts_with(n.nspname, $1) ORDER BY 1",
            &[&prefix],
        )
        .map_err(|e| db_error(&location, e))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

pub(super) fn set_space_record(url: &str, schema: Option<&str>, record: &str) -> Result<()> {
    let (mut client, location) = one_connection(url)?;
    let table = match schema {
        Some(schema) => format!("{schema}.library_meta"),
        None => "library_meta".to_string(),
    };
    let statement: String = client
        .query_one("SELECT format('COMMENT ON TABLE %s IS %L', $1::text::regclass, $2::text)", &[&table, &record])
        .map_err(|e| db_error(&location, e))?
        .get(0);
    client.batch_execute(&statement).map_err(|e| db_error(&location, e))
}

/// `schema` names are made by `spaces.rs` from letters, digits and `_` only. Under the schema
/// lock: two hosts starting the same new model at once would both try to create it, and
/// `IF NOT EXISTS` does not keep the second from failing on the catalog's unique name.
pub(super) fn create_space_schema(url: &str, schema: &str) -> Result<()> {
    let (mut client, location) = one_connection(url)?;
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); CREATE SCHEMA IF NOT EXISTS {schema}; COMMIT"
        ))
        .map_err(|e| db_error(&location, e))
}

pub(super) fn drop_space_schema(url: &str, schema: &str) -> Result<()> {
    let (mut client, location) = one_connection(url)?;
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).map_err(|e| db_error(&location, e))
}

/// Empties the first space: its pictures, skipped files, folders, runs and model (so that its
/// vector index, made for that model's dimension, goes too). Users and tokens stay.
pub(super) fn clear_library(url: &str) -> Result<()> {
    let (mut client, location) = one_connection(url)?;
    client
        .batch_execute(
            "BEGIN; DROP INDEX IF EXISTS images_embedding; TRUNCATE images, skipped, roots, runs; \
             DELETE FROM library_meta WHERE key <> 'library_id'; COMMIT",
        )
        .map_err(|e| db_error(&location, e))
}

impl Postgres {
    /// Connects to `url`, applies any schema versions the database lacks, and keeps caches
    /// (thumbnails) under `cache_root`. With `read_url` (a streaming replica of it), searches
    /// and listings read from there; writes, and the indexer's reads, stay on `url`.
    pub fn connect(
        url: &str,
        read_url: Option<&str>,
        cache_root: &std::path::Path,
        schema: Option<&str>,
    ) -> Result<Self> {
        let (pool, location) = connection_pool(url, schema)?;
        let cache_dir = cache_root
            .join("postgres")
            .join(location.trim_start_matches("postgres://").replace(|c: char| !c.is_alphanumeric() && c != '.', "_"));
        let replica = read_url.map(|url| connection_pool(url, schema)).transpose()?;
        let ef_search_override = match std::env::var("IMGSEARCH_PG_EF_SEARCH") {
            Ok(value) => Some(value.parse().ok().filter(|ef| (1..=EF_SEARCH_MAX).contains(ef)).ok_or_else(|| {
                db_error(
                    &location,
                    format!("IMGSEARCH_PG_EF_SEARCH={value:?}: give a number from 1 to {EF_SEARCH_MAX}"),
                )
            })?),
            Err(_) => None,
        };
        let mut library = Self {
            pool,
            location,
            replica,
            cache_dir,
            dim: OnceLock::new(),
            ef_search: EF_SEARCH,
            index_deferred: false,
            spare_ids: Arc::default(),
        };
        if let Some(schema) = schema {
            // A removed space's schema: its tables would otherwise be made in `public`.
            let exists: bool = library
                .connection()?
                .query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&schema])
                .map_err(|e| library.err(e))?
                .get(0);
            if !exists {
                return Err(library.err("this model space was removed; `imgsearch stats` lists the library's models"));
            }
        }
        library.migrate()?;
        library.check_replica()?;
        if let Some(info) = library.read_model_info()? {
            let _ = library.dim.set(info.dim);
        }
        library.ef_search = match ef_search_override {
            Some(ef) => ef,
            None if library.vector_index_is_outdated()? => EF_SEARCH_OLD_INDEX,
            None => EF_SEARCH,
        };
        Ok(library)
    }

    fn err(&self, e: impl std::fmt::Display + 'static) -> Error {
        db_error(&self.location, e)
    }

    fn connection(&self) -> Result<Connection> {
        self.pool.get().map_err(|e| self.err(format!("no connection ({e}); is the server running?")))
    }

    /// A connection for searches and listings: to the replica if there is one.
    fn reader(&self) -> Result<Connection> {
        match &self.replica {
            Some((pool, location)) => {
                pool.get().map_err(|e| db_error(location, format!("no connection ({e}); is the replica running?")))
            }
            None => self.connection(),
        }
    }

    fn migrate(&self) -> Result<()> {
        let mut client = self.connection()?;
        let mut tx = client.transaction().map_err(|e| self.err(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).map_err(|e| self.err(e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS imgsearch_schema \
             (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .map_err(|e| self.err(e))?;
        let applied: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM imgsearch_schema", &[])
            .map_err(|e| self.err(e))?
            .get(0);
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if applied > known {
            return Err(self.err(format!(
                "the database has schema version {applied}, newer than this imgsearch knows ({known}): upgrade imgsearch"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
            tx.batch_execute(sql).map_err(|e| {
                let hint = if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                    " (a superuser must run `CREATE EXTENSION vector` in this database once)"
                } else {
                    ""
                };
                self.err(format!("applying schema version {version}: {e}{hint}"))
            })?;
            tx.execute("INSERT INTO imgsearch_schema (version) VALUES ($1)", &[version]).map_err(|e| self.err(e))?;
        }
        if applied > 0 && applied < COMPOSED_WORDS {
            compose_filter_words(&mut tx).map_err(|e| self.err(format!("composing the filter words: {e}")))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// `--read-store` must be a copy of this library (its id, made by schema version 6, is the
    /// same): another database there would be searched in the library's place, silently.
    fn check_replica(&self) -> Result<()> {
        let Some((_, location)) = &self.replica else { return Ok(()) };
        let id_in = |connection: &mut postgres::Client| -> std::result::Result<Option<String>, postgres::Error> {
            match connection.query_opt("SELECT value #>> '{}' FROM library_meta WHERE key = 'library_id'", &[]) {
                Ok(row) => Ok(row.map(|row| row.get(0))),
                // Not even the tables yet: nothing of a library has been replayed there.
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let ours = id_in(&mut *self.connection()?).map_err(|e| self.err(e))?;
        let started = Instant::now();
        loop {
            let theirs = id_in(&mut *self.reader()?).map_err(|e| db_error(location, e))?;
            match theirs {
                Some(theirs) if Some(&theirs) == ours.as_ref() => return Ok(()),
                Some(_) => {
                    return Err(db_error(
                        location,
                        format!(
                            "--read-store holds another library than {}: give the URL of a streaming replica of \
                             that database",
                            self.location
                        ),
                    ))
                }
                None if started.elapsed() < REPLICA_CATCH_UP => std::thread::sleep(Duration::from_millis(100)),
                None => {
                    return Err(db_error(
                        location,
                        format!(
                            "--read-store holds no imgsearch library (none replayed in {} s): give the URL of a \
                             streaming replica of {}",
                            REPLICA_CATCH_UP.as_secs(),
                            self.location
                        ),
                    ))
                }
            }
        }
    }

    fn read_model_info(&self) -> Result<Option<ModelInfo>> {
        let row = self
            .connection()?
            .query_opt("SELECT value FROM library_meta WHERE key = 'model'", &[])
            .map_err(|e| self.err(e))?;
        Ok(row.map(|row| row.get::<_, Json<ModelInfo>>(0).0))
    }

    fn dim(&self) -> Option<usize> {
        self.dim.get().copied()
    }

    /// Walks a whole table `PAGE` rows per query, resuming after the last key seen (keyset
    /// paging: no cursor to hold open, no connection held between pages).
    fn paged<'a, K, T>(
        &'a self,
        sql: &'static str,
        first: K,
        row: impl Fn(&Row) -> Result<(K, T)> + 'a,
    ) -> Box<dyn Iterator<Item = Result<T>> + 'a>
    where
        K: ToSql + Sync + 'a,
        T: 'a,
    {
        let mut after = Some(first);
        let mut buffer = VecDeque::new();
        Box::new(std::iter::from_fn(move || {
            if buffer.is_empty() {
                let key = after.take()?;
                let rows =
                    match self.connection().and_then(|mut c| c.query(sql, &[&key, &PAGE]).map_err(|e| self.err(e))) {
                        Ok(rows) => rows,
                        Err(e) => return Some(Err(e)),
                    };
                let full = rows.len() as i64 == PAGE;
                for r in &rows {
                    match row(r) {
                        Ok((key, item)) => {
                            after = Some(key);
                            buffer.push_back(item);
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
                if !full {
                    after = None;
                }
            }
            buffer.pop_front().map(Ok)
        }))
    }
}

/// Rows of (id, embedding) scored against `query` here, as the embedded backend scores, so that
/// both give the same scores to the last bit (pgvector sums in another order).
fn rescored(rows: &[Row], query: &[f32]) -> Vec<(ImageId, f32)> {
    let mut scored: Vec<(ImageId, f32)> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as ImageId, super::score(r.get::<_, Vector>(1).as_slice(), query)))
        .collect();
    super::best_first(&mut scored);
    scored
}

fn record_of(row: &Row, with_embedding: bool) -> ImageRecord {
    let mut record = row.get::<_, Json<ImageRecord>>("record").0;
    if with_embedding {
        record.embedding = row.get::<_, Vector>("embedding").to_vec();
    }
    record
}

impl Lookup for Postgres {
    fn longest_path(&self) -> Option<usize> {
        Some(LONGEST_PATH)
    }

    fn image_at(&self, path: &[u8]) -> Result<Option<ImageRecord>> {
        let row = self
            .connection()?
            .query_opt("SELECT record FROM images WHERE path = $1", &[&path])
            .map_err(|e| self.err(e))?;
        Ok(row.map(|row| record_of(&row, false)))
    }

    fn skipped_at(&self, path: &[u8]) -> Result<Option<SkipRecord>> {
        let row = self
            .connection()?
            .query_opt("SELECT record FROM skipped WHERE path = $1", &[&path])
            .map_err(|e| self.err(e))?;
        Ok(row.map(|row| row.get::<_, Json<SkipRecord>>(0).0))
    }

    fn known_at(&self, paths: &[Vec<u8>]) -> Result<Vec<Known>> {
        let rows = self
            .connection()?
            .query(
                "SELECT path, record, false FROM images WHERE path = ANY($1) \
                 UNION ALL SELECT path, record, true FROM skipped WHERE path = ANY($1)",
                &[&paths],
            )
            .map_err(|e| self.err(e))?;
        let mut known: HashMap<Vec<u8>, Known> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let entry = known.entry(row.get(0)).or_insert(Known::Nothing);
            match (row.get::<_, bool>(2), &entry) {
                (false, _) => *entry = Known::Picture(Box::new(record_of(row, false))),
                (true, Known::Nothing) => *entry = Known::Skipped(row.get::<_, Json<SkipRecord>>(1).0),
                (true, _) => {}
            }
        }
        Ok(paths.iter().map(|path| known.get(path).cloned().unwrap_or(Known::Nothing)).collect())
    }

    fn image_with_hash(&self, hash: &str) -> Result<Option<ImageRecord>> {
        if hash.is_empty() {
            return Ok(None);
        }
        let row = self
            .connection()?
            .query_opt("SELECT record, embedding FROM images WHERE hash = $1 LIMIT 1", &[&hash])
            .map_err(|e| self.err(e))?;
        Ok(row.map(|row| record_of(&row, true)))
    }

    fn paths(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, ImageId)>> + '_> {
        self.paged("SELECT id, path FROM images WHERE id > $1 ORDER BY id LIMIT $2", i64::MIN, |row| {
            let id: i64 = row.get(0);
            Ok((id, (row.get(1), id as ImageId)))
        })
    }

    fn skipped(&self) -> Box<dyn Iterator<Item = Result<SkipRecord>> + '_> {
        self.paged("SELECT path, record FROM skipped WHERE path > $1 ORDER BY path LIMIT $2", Vec::<u8>::new(), |row| {
            Ok((row.get(0), row.get::<_, Json<SkipRecord>>(1).0))
        })
    }
}

/// A WHERE condition (always at least `true`) and its parameters, numbered after `first_param`.
struct Condition {
    sql: String,
    params: Vec<Box<dyn ToSql + Sync>>,
    first_param: usize,
}

impl Condition {
    fn new(filters: &[Filter], exclude: Option<ImageId>, first_param: usize) -> Self {
        let mut condition = Condition { sql: "true".to_string(), params: Vec::new(), first_param };
        for filter in filters {
            match filter {
                Filter::Path(v) => condition.add("path_words @> $?", Box::new(words(v).collect::<Vec<_>>())),
                Filter::Name(v) => condition.add("name_words @> $?", Box::new(words(v).collect::<Vec<_>>())),
                Filter::Camera(v) => condition.add("camera_words @> $?", Box::new(words(v).collect::<Vec<_>>())),
                Filter::Caption(v) => condition.add("caption_words @> $?", Box::new(words(v).collect::<Vec<_>>())),
                Filter::Keyword(v) => condition.add("keyword_words @> $?", Box::new(words(v).collect::<Vec<_>>())),
                Filter::Rating(stars) => condition.add("rating >= $?", Box::new(i16::from(*stars))),
                Filter::Folder(v) => condition.add("folders @> $?", Box::new(vec![composed(v)])),
                Filter::Type(v) => condition.add("format = $?", Box::new(v.clone())),
                Filter::Tag(v) => condition.add("tags @> $?", Box::new(vec![v.clone()])),
                Filter::After(t) => condition.add("taken >= $?", Box::new(*t)),
                Filter::Before(t) => condition.add("taken < $?", Box::new(*t)),
                Filter::Hour { from, until } => {
                    let (from, until) = (i16::from(*from), i16::from(*until));
                    // Past midnight (22 → 5): from..24 or 0..until.
                    let join = if from < until { "AND" } else { "OR" };
                    condition.add(&format!("(hour >= $? {join} hour < {until})"), Box::new(from));
                }
                Filter::Place(area) => {
                    let bounds = area.bounds();
                    condition.add("latitude >= $?", Box::new(bounds.latitudes.0));
                    condition.add("latitude <= $?", Box::new(bounds.latitudes.1));
                    let longitudes = vec!["(longitude >= $? AND longitude <= $?)"; bounds.longitudes.len()];
                    condition.add_all(
                        &format!("({})", longitudes.join(" OR ")),
                        bounds.longitudes.iter().flat_map(|(w, e)| [Box::new(*w) as _, Box::new(*e) as _]).collect(),
                    );
                    if let Area::Around { latitude, longitude, radius_m } = *area {
                        // The haversine distance, as crate::geo::distance_m computes it.
                        condition.add_all(
                            "2 * $?::float8 * asin(least(1, sqrt(\
                             power(sin(radians(latitude - $?::float8) / 2), 2) + cos(radians($?::float8)) \
                             * cos(radians(latitude)) * power(sin(radians(longitude - $?::float8) / 2), 2)))) \
                             <= $?::float8",
                            vec![
                                Box::new(crate::geo::EARTH_RADIUS_M),
                                Box::new(latitude),
                                Box::new(latitude),
                                Box::new(longitude),
                                Box::new(radius_m),
                            ],
                        );
                    }
                }
            }
        }
        if let Some(id) = exclude {
            condition.add("id <> $?", Box::new(id as i64));
        }
        condition
    }

    /// ANDs a clause: each of its `$?` takes the next of `params`.
    fn add_all(&mut self, clause: &str, params: Vec<Box<dyn ToSql + Sync>>) {
        self.sql.push_str(" AND ");
        let mut pieces = clause.split("$?");
        self.sql.push_str(pieces.next().unwrap_or_default());
        for (piece, param) in pieces.zip(params) {
            self.params.push(param);
            self.sql.push_str(&format!("${}{piece}", self.first_param + self.params.len() - 1));
        }
    }

    fn add(&mut self, clause: &str, param: Box<dyn ToSql + Sync>) {
        self.add_all(clause, vec![param]);
    }

    fn params<'a>(&'a self, before: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a (dyn ToSql + Sync)> {
        before.iter().copied().chain(self.params.iter().map(|p| &**p as &(dyn ToSql + Sync))).collect()
    }
}

/// The filter columns derived from a record (as the embedded backend's text index derives its
/// fields).
struct FilterColumns {
    path_words: Vec<String>,
    name_words: Vec<String>,
    camera_words: Vec<String>,
    caption_words: Vec<String>,
    keyword_words: Vec<String>,
    folders: Vec<String>,
    taken: Option<i64>,
    hour: Option<i16>,
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl FilterColumns {
    fn of(record: &ImageRecord) -> Self {
        let path = record.path.to_path_buf();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self {
            path_words: words(&path.to_string_lossy()).collect(),
            name_words: words(&name).collect(),
            camera_words: record.facts.camera().map(|c| words(&c).collect()).unwrap_or_default(),
            caption_words: [&record.facts.title, &record.facts.description]
                .into_iter()
                .flatten()
                .flat_map(|text| words(text))
                .collect(),
            keyword_words: record.facts.keywords.iter().flat_map(|keyword| words(keyword)).collect(),
            folders: path
                .ancestors()
                .skip(1)
                .filter(|a| !a.as_os_str().is_empty())
                .map(|a| composed(&a.to_string_lossy()))
                .collect(),
            taken: record.facts.taken,
            hour: record.facts.taken.map(|t| (t.rem_euclid(86_400) / 3600) as i16),
            latitude: record.facts.place().map(|p| p.0),
            longitude: record.facts.place().map(|p| p.1),
        }
    }
}

/// Derives the filter columns again for the pictures whose words a decomposed letter may have
/// split (written before schema version 7): those whose record holds any letter beyond ASCII.
fn compose_filter_words(tx: &mut postgres::Transaction) -> std::result::Result<(), postgres::Error> {
    const BATCH: i32 = 1000;
    let update = tx.prepare(
        "UPDATE images SET path_words = $2, name_words = $3, camera_words = $4, caption_words = $5, \
         keyword_words = $6, folders = $7 WHERE id = $1",
    )?;
    let portal =
        tx.bind("SELECT record FROM images WHERE octet_length(record::text) <> char_length(record::text)", &[])?;
    loop {
        let rows = tx.query_portal(&portal, BATCH)?;
        for row in &rows {
            let record = row.get::<_, Json<ImageRecord>>(0).0;
            let f = FilterColumns::of(&record);
            tx.execute(
                &update,
                &[
                    &(record.id as i64),
                    &f.path_words,
                    &f.name_words,
                    &f.camera_words,
                    &f.caption_words,
                    &f.keyword_words,
                    &f.folders,
                ],
            )?;
        }
        if rows.len() < BATCH as usize {
            return Ok(());
        }
    }
}

/// The columns of `images`, in the order [`Postgres::upsert_images`] writes them.
const IMAGE_COLUMNS: &str =
    "id, path, hash, record, embedding, path_words, name_words, camera_words, folders, format, \
    taken, hour, tags, latitude, longitude, caption_words, keyword_words, rating";
/// Every column but the key, replaced when a path is written again.
const IMAGE_UPDATES: &str = "id = EXCLUDED.id, hash = EXCLUDED.hash, record = EXCLUDED.record, \
    embedding = EXCLUDED.embedding, path_words = EXCLUDED.path_words, name_words = EXCLUDED.name_words, \
    camera_words = EXCLUDED.camera_words, folders = EXCLUDED.folders, format = EXCLUDED.format, \
    taken = EXCLUDED.taken, hour = EXCLUDED.hour, tags = EXCLUDED.tags, latitude = EXCLUDED.latitude, \
    longitude = EXCLUDED.longitude, caption_words = EXCLUDED.caption_words, keyword_words = EXCLUDED.keyword_words, \
    rating = EXCLUDED.rating";

/// Bytes pgvector's HNSW build holds per picture of `dim` dimensions (halfvec, m = 16): its
/// notice "hnsw graph no longer fits into maintenance_work_mem after 38599 tuples" at 64 MB and
/// 512 dimensions says 1,739; a quarter more for headroom.
fn graph_bytes_per_picture(dim: usize) -> i64 {
    (2 * dim as i64 + 768) * 5 / 4
}

/// The most [`build_memory`] asks for (kB): a database server holding millions of pictures has
/// it; an operator who wants another figure sets maintenance_work_mem, which then stands.
const BUILD_MEMORY_CAP_KB: i64 = 2 << 20;

/// The `maintenance_work_mem` (kB) to build the vector index with, where the server's is left at
/// PostgreSQL's default of 64 MB and the graph needs more; `None`: the server's. A graph that
/// outgrows it is built on disk, several times slower (at 200,000 pictures here: over 12 minutes
/// instead of 3 min 23 s).
fn build_memory(client: &mut impl postgres::GenericClient, dim: usize) -> Result<Option<i64>, postgres::Error> {
    let row = client.query_one(
        "SELECT setting::bigint, source, (SELECT count(*) FROM images) FROM pg_settings WHERE name = 'maintenance_work_mem'",
        &[],
    )?;
    Ok(memory_for_graph(row.get(0), &row.get::<_, String>(1), row.get(2), dim))
}

/// [`build_memory`]'s choice for a server whose setting is `setting` kB, from `source` (as
/// pg_settings says), for `pictures` of `dim` dimensions.
fn memory_for_graph(setting: i64, source: &str, pictures: i64, dim: usize) -> Option<i64> {
    // Set in postgresql.conf, for the role or database, or in the URL's options: an operator's
    // choice, which stands.
    if source != "default" {
        return None;
    }
    let needed = (pictures * graph_bytes_per_picture(dim) / 1024).min(BUILD_MEMORY_CAP_KB);
    (needed > setting).then_some(needed)
}

/// Shows the server's notices that matter to the person running imgsearch (by default the
/// client only logs them, which nobody sees).
fn forward_notice(notice: postgres::error::DbError) {
    if notice.message().starts_with("hnsw graph no longer fits into maintenance_work_mem") {
        tracing::warn!(
            "the database server's maintenance_work_mem is too small for the vector index ({}): the rest of its \
             build is several times slower. An operator can give imgsearch's role more for the next build: \
             ALTER ROLE <role> SET maintenance_work_mem = '4GB'",
            notice.message()
        );
    } else if notice.parsed_severity() == Some(postgres::error::Severity::Warning) {
        tracing::warn!("database: {}", notice.message());
    }
}

/// Where a change goes in a batch: by path (then tags, by id). Every writer takes rows' locks in
/// this order, so that two writers on overlapping files wait for each other instead of
/// deadlocking; a path's changes keep their order (the sort is stable).
fn write_order(change: &Change) -> (u8, Vec<u8>) {
    match change {
        Change::Upsert(r) => (0, stored_bytes(&r.path)),
        Change::Remove(path) => (0, stored_bytes(path)),
        Change::Skip(r) => (0, stored_bytes(&r.path)),
        Change::Tag { id, .. } => (1, id.to_be_bytes().to_vec()),
    }
}

/// Whether a failed transaction may simply be tried again (two writers crossed).
fn is_transient(e: &postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// Runs `transaction` until it commits, again after a deadlock or serialization failure (up to
/// five retries, backing off): several hosts write one library at once, and PostgreSQL ends one
/// of two crossing transactions rather than letting both wait.
fn retrying(
    mut transaction: impl FnMut() -> std::result::Result<(), postgres::Error>,
) -> std::result::Result<(), postgres::Error> {
    let mut attempt = 0;
    loop {
        match transaction() {
            Err(e) if is_transient(&e) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 << attempt));
            }
            done => return done,
        }
    }
}

impl Postgres {
    /// Writes `changes` (in [`write_order`]) in one transaction, a few statements per batch
    /// rather than a few per picture: on a database across a network, round trips and not the
    /// rows are what a batch costs.
    fn write_batch(client: &mut Connection, changes: &[&Change]) -> std::result::Result<(), postgres::Error> {
        let mut tx = client.transaction()?;
        let mut round: Vec<&Change> = Vec::new();
        for change in changes {
            // A path's later change waits for the next round, so that each applies in order.
            if round.last().is_some_and(|last| write_order(last) == write_order(change)) {
                Self::write_round(&mut tx, &round)?;
                round.clear();
            }
            round.push(*change);
        }
        Self::write_round(&mut tx, &round)?;
        tx.commit()
    }

    /// Writes changes of distinct paths (and ids), which therefore commute.
    fn write_round(tx: &mut postgres::Transaction, changes: &[&Change]) -> std::result::Result<(), postgres::Error> {
        let (mut upserts, mut skips, mut tags) = (Vec::new(), Vec::new(), Vec::new());
        // Paths whose picture or skip record goes: a skipped or removed file is no picture, and
        // a picture or a removed file no longer a skipped file.
        let (mut not_images, mut not_skipped) = (Vec::new(), Vec::new());
        for change in changes {
            match change {
                Change::Upsert(record) => {
                    not_skipped.push(stored_bytes(&record.path));
                    upserts.push(record);
                }
                Change::Remove(path) => {
                    not_images.push(stored_bytes(path));
                    not_skipped.push(stored_bytes(path));
                }
                Change::Skip(record) => {
                    not_images.push(stored_bytes(&record.path));
                    skips.push(record);
                }
                Change::Tag { id, tags: new } => tags.push((*id as i64, new)),
            }
        }
        if !not_images.is_empty() {
            tx.execute("DELETE FROM images WHERE path = ANY($1)", &[&not_images])?;
        }
        if !not_skipped.is_empty() {
            tx.execute("DELETE FROM skipped WHERE path = ANY($1)", &[&not_skipped])?;
        }
        if !skips.is_empty() {
            let paths: Vec<Vec<u8>> = skips.iter().map(|r| stored_bytes(&r.path)).collect();
            let records: Vec<Json<&SkipRecord>> = skips.iter().map(|r| Json(*r)).collect();
            let ignored: Vec<bool> = skips.iter().map(|r| r.ignored).collect();
            tx.execute(
                "INSERT INTO skipped (path, record, ignored) SELECT * FROM unnest($1::bytea[], $2::jsonb[], $3::bool[]) \
                 ON CONFLICT (path) DO UPDATE SET record = EXCLUDED.record, ignored = EXCLUDED.ignored",
                &[&paths, &records, &ignored],
            )?;
        }
        if !upserts.is_empty() {
            Self::upsert_images(tx, &upserts)?;
        }
        for (id, tags) in tags {
            tx.execute(
                "UPDATE images SET record = jsonb_set(record, '{tags}', $2), tags = $3 WHERE id = $1",
                &[&id, &Json(tags), tags],
            )?;
        }
        Ok(())
    }

    /// Inserts or replaces pictures of distinct paths: streamed into a temporary table with
    /// `COPY` (binary: no embedding formatted as text), then merged into `images` with one
    /// statement.
    fn upsert_images(
        tx: &mut postgres::Transaction,
        records: &[&ImageRecord],
    ) -> std::result::Result<(), postgres::Error> {
        tx.batch_execute("CREATE TEMPORARY TABLE IF NOT EXISTS staged_images (LIKE images INCLUDING DEFAULTS)")?;
        let types: Vec<Type> = tx
            .prepare(&format!("SELECT {IMAGE_COLUMNS} FROM staged_images"))?
            .columns()
            .iter()
            .map(|column| column.type_().clone())
            .collect();
        let mut writer = BinaryCopyInWriter::new(
            tx.copy_in(&format!("COPY staged_images ({IMAGE_COLUMNS}) FROM STDIN BINARY"))?,
            &types,
        );
        for record in records {
            let f = FilterColumns::of(record);
            writer.write(&[
                &(record.id as i64),
                &stored_bytes(&record.path),
                &record.hash,
                &Json(record),
                &Vector::from(record.embedding.clone()),
                &f.path_words,
                &f.name_words,
                &f.camera_words,
                &f.folders,
                &record.format,
                &f.taken,
                &f.hour,
                &record.tags,
                &f.latitude,
                &f.longitude,
                &f.caption_words,
                &f.keyword_words,
                &record.facts.rating.map(i16::from),
            ])?;
        }
        writer.finish()?;
        // In path order, the order every writer takes the rows' locks in (see `apply`); emptied
        // for the next round of this transaction.
        tx.batch_execute(&format!(
            "INSERT INTO images ({IMAGE_COLUMNS}) SELECT {IMAGE_COLUMNS} FROM staged_images ORDER BY path \
             ON CONFLICT (path) DO UPDATE SET {IMAGE_UPDATES}; TRUNCATE staged_images"
        ))
    }

    /// Exact scores of the pictures that pass `condition`, best first.
    fn exact_nearest(&self, query: &[f32], k: usize, condition: &Condition) -> Result<Vec<(ImageId, f32)>> {
        let sql =
            format!("SELECT id, embedding FROM images WHERE {} ORDER BY embedding <#> $1, id LIMIT $2", condition.sql);
        let vector = Vector::from(query.to_vec());
        let rows = self.reader()?.query(&sql, &condition.params(&[&vector, &(k as i64)])).map_err(|e| self.err(e))?;
        Ok(rescored(&rows, query))
    }

    /// The HNSW index's candidates re-scored exactly from the stored f32 embeddings. Under a
    /// filter, pgvector's iterative scan keeps walking the graph until enough rows pass.
    fn approximate_nearest(
        &self,
        dim: usize,
        query: &[f32],
        k: usize,
        condition: &Condition,
    ) -> Result<Vec<(ImageId, f32)>> {
        let ef = self.ef_search.max(k).min(EF_SEARCH_MAX);
        let sql = format!(
            "WITH candidates AS MATERIALIZED ( \
                SELECT id, embedding FROM images WHERE {} \
                ORDER BY (embedding::halfvec({dim})) <=> ($1::vector)::halfvec({dim}) LIMIT $2) \
             SELECT id, embedding FROM candidates ORDER BY embedding <#> $1, id LIMIT $3",
            condition.sql
        );
        let vector = Vector::from(query.to_vec());
        let mut client = self.reader()?;
        let mut tx = client.transaction().map_err(|e| self.err(e))?;
        tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = relaxed_order"))
            .map_err(|e| self.err(e))?;
        let rows = tx.query(&sql, &condition.params(&[&vector, &(ef as i64), &(k as i64)])).map_err(|e| self.err(e))?;
        Ok(rescored(&rows, query))
    }

    fn count(&self, sql: &str) -> Result<i64> {
        Ok(self.reader()?.query_one(sql, &[]).map_err(|e| self.err(e))?.get(0))
    }

    /// Creates the vector index for `dim`-dimensional embeddings if it is missing, with the
    /// memory its graph needs ([`build_memory`]).
    fn create_vector_index(client: &mut impl postgres::GenericClient, dim: usize) -> Result<(), postgres::Error> {
        // halfvec: half the index's size, and its ordering only picks candidates that are
        // re-scored from the f32 embeddings.
        let create = format!(
            "CREATE INDEX IF NOT EXISTS images_embedding ON images \
             USING hnsw ((embedding::halfvec({dim})) halfvec_cosine_ops) WITH (m = 16, ef_construction = {EF_CONSTRUCTION})"
        );
        if let Some(kilobytes) = build_memory(client, dim)? {
            let mut attempt = client.transaction()?;
            attempt.execute("SELECT set_config('maintenance_work_mem', $1, true)", &[&format!("{kilobytes}kB")])?;
            match attempt.batch_execute(&create) {
                Ok(()) => return attempt.commit(),
                // SQLSTATE class 53, insufficient resources: e.g. a parallel build's shared
                // memory in a container with a small /dev/shm. The attempt is rolled back.
                Err(e) if e.code().is_some_and(|code| code.code().starts_with("53")) => tracing::warn!(
                    "building the vector index with {} MiB of memory failed ({e}); building it with the server's \
                     maintenance_work_mem instead, which takes longer",
                    kilobytes / 1024
                ),
                Err(e) => return Err(e),
            }
        }
        client.batch_execute(&create)
    }

    /// Whether the vector index exists and was built with other parameters than
    /// [`Self::create_vector_index`]'s (by an older imgsearch).
    fn vector_index_is_outdated(&self) -> Result<bool> {
        let options: Option<String> = self
            .connection()?
            .query_opt(
                "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class WHERE oid = to_regclass('images_embedding')",
                &[],
            )
            .map_err(|e| self.err(e))?
            .map(|row| row.get(0));
        Ok(options.is_some_and(|options| !options.contains(&format!("ef_construction={EF_CONSTRUCTION}"))))
    }

    /// Shows how far the build of the vector index by the connection with process id `builder`
    /// has come (minutes for a large library), until `built`.
    fn show_index_build(&self, builder: i32, built: &AtomicBool, progress: &ProgressBar) {
        let Ok(mut client) = self.connection() else { return };
        let Ok(pictures) = client.query_one("SELECT count(*) FROM images", &[]) else { return };
        progress.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} pictures in the vector index · ETA {eta}",
            )
            .expect("valid template"),
        );
        progress.reset();
        progress.set_length(pictures.get::<_, i64>(0) as u64);
        while !built.load(Ordering::Relaxed) {
            // HNSW builds report the pictures added to the graph so far.
            let done =
                client.query_opt("SELECT tuples_done FROM pg_stat_progress_create_index WHERE pid = $1", &[&builder]);
            if let Ok(Some(row)) = done {
                progress.set_position(row.get::<_, i64>(0) as u64);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Library for Postgres {
    fn location(&self) -> String {
        match &self.replica {
            Some((_, replica)) => format!("{} (searches read from {replica})", self.location),
            None => self.location.clone(),
        }
    }

    fn check_reachable(&self) -> Result<()> {
        self.connection()?.simple_query("SELECT 1").map_err(|e| self.err(e))?;
        if let Some((_, location)) = &self.replica {
            self.reader()?.simple_query("SELECT 1").map_err(|e| db_error(location, e))?;
        }
        Ok(())
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone()
    }

    fn model_info(&self) -> Result<Option<ModelInfo>> {
        self.read_model_info()
    }

    fn check_model(&self, info: &ModelInfo) -> Result<()> {
        let err = |e| self.err(e);
        let mut client = self.connection()?;
        let mut tx = client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).map_err(err)?;
        let recorded = tx.query_opt("SELECT value FROM library_meta WHERE key = 'model'", &[]).map_err(err)?;
        match recorded.map(|row| row.get::<_, Json<ModelInfo>>(0).0) {
            None => {
                tx.execute("INSERT INTO library_meta (key, value) VALUES ('model', $1)", &[&Json(info)])
                    .map_err(err)?;
                Self::create_vector_index(&mut tx, info.dim).map_err(err)?;
                tx.commit().map_err(err)?;
                let _ = self.dim.set(info.dim);
                Ok(())
            }
            Some(recorded) if recorded == *info => Ok(()),
            Some(recorded) => Err(Error::ModelMismatch {
                library: self.location.clone(),
                recorded: format!("{} (dim {})", recorded.model, recorded.dim),
                requested: format!("{} (dim {})", info.model, info.dim),
            }),
        }
    }

    fn image(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        let row = self
            .reader()?
            .query_opt("SELECT record, embedding FROM images WHERE id = $1", &[&(id as i64)])
            .map_err(|e| self.err(e))?;
        Ok(row.map(|row| record_of(&row, true)))
    }

    fn image_meta(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        Ok(self.images_meta(&[id])?.pop())
    }

    fn images_meta(&self, ids: &[ImageId]) -> Result<Vec<ImageRecord>> {
        let wanted: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let rows = self
            .reader()?
            .query("SELECT record FROM images WHERE id = ANY($1)", &[&wanted])
            .map_err(|e| self.err(e))?;
        let mut found: std::collections::HashMap<ImageId, ImageRecord> =
            rows.iter().map(|row| record_of(row, false)).map(|r| (r.id, r)).collect();
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    fn images_at(&self, paths: &[Vec<u8>]) -> Result<Vec<Option<ImageRecord>>> {
        // From the primary: loaders decide what to write by it.
        let rows = self
            .connection()?
            .query("SELECT path, record, embedding FROM images WHERE path = ANY($1)", &[&paths])
            .map_err(|e| self.err(e))?;
        let found: HashMap<Vec<u8>, ImageRecord> =
            rows.iter().map(|row| (row.get::<_, Vec<u8>>("path"), record_of(row, true))).collect();
        Ok(paths.iter().map(|path| found.get(path).cloned()).collect())
    }

    fn images_with_hash(&self, hash: &str) -> Result<Vec<ImageId>> {
        if hash.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .reader()?
            .query("SELECT id FROM images WHERE hash = $1 ORDER BY id", &[&hash])
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as ImageId).collect())
    }

    fn image_count(&self) -> usize {
        self.count("SELECT count(*) FROM images").unwrap_or_else(|e| {
            tracing::warn!("{e}");
            0
        }) as usize
    }

    fn images(&self) -> Box<dyn Iterator<Item = Result<ImageRecord>> + '_> {
        self.paged("SELECT id, record, embedding FROM images WHERE id > $1 ORDER BY id LIMIT $2", i64::MIN, |row| {
            Ok((row.get(0), record_of(row, true)))
        })
    }

    fn lookup(&self) -> Arc<dyn Lookup> {
        Arc::new(self.clone())
    }

    fn indexed_roots(&self) -> Result<Vec<IndexedRoot>> {
        let rows = self.connection()?.query("SELECT root FROM roots ORDER BY path", &[]).map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| r.get::<_, Json<IndexedRoot>>(0).0).collect())
    }

    fn tagging(&self) -> Result<Option<Tagging>> {
        let row = self
            .reader()?
            .query_opt("SELECT value FROM library_meta WHERE key = 'tagging'", &[])
            .map_err(|e| self.err(e))?;
        Ok(row.map(|row| row.get::<_, Json<Tagging>>(0).0))
    }

    fn set_tagging(&mut self, tagging: Option<&Tagging>) -> Result<()> {
        let mut client = self.connection()?;
        match tagging {
            Some(tagging) => client.execute(
                "INSERT INTO library_meta (key, value) VALUES ('tagging', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&Json(tagging)],
            ),
            None => client.execute("DELETE FROM library_meta WHERE key = 'tagging'", &[]),
        }
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn tag_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        let rows = self
            .reader()?
            .query("SELECT tag, count(*) FROM images, unnest(tags) AS tag GROUP BY tag", &[])
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64)).collect())
    }

    fn keyword_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        let rows = self
            .reader()?
            .query(
                "SELECT keyword, count(*) FROM images, jsonb_array_elements_text(record->'facts'->'keywords') AS keyword \
                 GROUP BY keyword",
                &[],
            )
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64)).collect())
    }

    fn last_run(&self) -> Result<Option<serde_json::Value>> {
        let row = self
            .reader()?
            .query_opt("SELECT summary FROM runs ORDER BY id DESC LIMIT 1", &[])
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn new_id(&self) -> Result<ImageId> {
        let mut spare = self.spare_ids.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if spare.is_empty() {
            let rows = self
                .connection()?
                .query("SELECT nextval('image_ids') FROM generate_series(1, $1::bigint)", &[&ID_BLOCK])
                .map_err(|e| self.err(e))?;
            spare.extend(rows.iter().map(|row| row.get::<_, i64>(0) as ImageId));
        }
        Ok(spare.pop_front().expect("a block of ids was just taken"))
    }

    fn apply(&mut self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut ordered: Vec<&Change> = changes.iter().collect();
        ordered.sort_by_cached_key(|change| write_order(change));
        let mut client = self.connection()?;
        retrying(|| Self::write_batch(&mut client, &ordered)).map_err(|e| self.err(e))
    }

    fn record_run(&mut self, roots: &[IndexedRoot], summary: &serde_json::Value) -> Result<()> {
        let mut client = self.connection()?;
        // Roots in one order for every host, as in `apply` (two hosts given the same roots in
        // another order deadlocked here).
        let mut roots: Vec<&IndexedRoot> = roots.iter().collect();
        roots.sort_by_key(|root| path_bytes(&root.path));
        retrying(|| {
            let mut tx = client.transaction()?;
            for root in &roots {
                // A root given a name replaces its unnamed entry (its pictures were re-keyed).
                tx.execute("DELETE FROM roots WHERE path = $1", &[&path_bytes(&root.path)])?;
                tx.execute(
                    "INSERT INTO roots (path, root) VALUES ($1, $2) ON CONFLICT (path) DO UPDATE SET root = EXCLUDED.root",
                    &[&path_bytes(&root.key()), &Json(root)],
                )?;
            }
            tx.execute("INSERT INTO runs (summary) VALUES ($1)", &[summary])?;
            // `serve --watch` records a run per root every few seconds: the latest ones are kept.
            tx.execute(
                "DELETE FROM runs WHERE id <= (SELECT id FROM runs ORDER BY id DESC OFFSET $1 LIMIT 1)",
                &[&KEPT_RUNS],
            )?;
            tx.commit()
        })
        .map_err(|e| self.err(e))
    }

    fn forget_roots(&mut self, keys: &[PathBuf]) -> Result<()> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|key| path_bytes(key)).collect();
        self.connection()?.execute("DELETE FROM roots WHERE path = ANY($1)", &[&keys]).map_err(|e| self.err(e))?;
        Ok(())
    }

    fn save(&mut self) -> Result<()> {
        Ok(()) // every `apply` is committed
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    fn nearest(
        &self,
        query: &[f32],
        k: usize,
        filters: &[Filter],
        exclude: Option<ImageId>,
    ) -> Result<Vec<(ImageId, f32)>> {
        let Some(dim) = self.dim() else { return Ok(Vec::new()) };
        if k == 0 || query.len() != dim {
            return Ok(Vec::new());
        }
        if !filters.is_empty() {
            // As in the embedded backend: a selective filter is scored exactly (a graph search
            // would have to wade through many pictures that fail it).
            let condition = Condition::new(filters, None, 1);
            let sql =
                format!("SELECT count(*) FROM (SELECT 1 FROM images WHERE {} LIMIT {EXACT_BELOW}) AS m", condition.sql);
            let matching: i64 = self.reader()?.query_one(&sql, &condition.params(&[])).map_err(|e| self.err(e))?.get(0);
            if (matching as usize) < EXACT_BELOW {
                return self.exact_nearest(query, k, &Condition::new(filters, exclude, 3));
            }
        }
        if k > EF_SEARCH_MAX {
            // Deep pages (`offset` 1,000 and beyond, or `k` that large): more candidates than
            // the graph search hands over, so every picture is scored.
            return self.exact_nearest(query, k, &Condition::new(filters, exclude, 3));
        }
        self.approximate_nearest(dim, query, k, &Condition::new(filters, exclude, 4))
    }

    fn passing(&self, ids: &[ImageId], filters: &[Filter]) -> Result<Vec<ImageId>> {
        if filters.is_empty() {
            return Ok(ids.to_vec());
        }
        let condition = Condition::new(filters, None, 2);
        let wanted: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let sql = format!("SELECT id FROM images WHERE id = ANY($1) AND {}", condition.sql);
        let rows = self.reader()?.query(&sql, &condition.params(&[&wanted])).map_err(|e| self.err(e))?;
        let passed: HashSet<ImageId> = rows.iter().map(|r| r.get::<_, i64>(0) as ImageId).collect();
        Ok(ids.iter().copied().filter(|id| passed.contains(id)).collect())
    }

    fn newest(&self, filters: &[Filter], limit: usize) -> Result<Vec<ImageId>> {
        let condition = Condition::new(filters, None, 2);
        let sql = format!("SELECT id FROM images WHERE {} ORDER BY taken DESC NULLS LAST, id LIMIT $1", condition.sql);
        let rows = self.reader()?.query(&sql, &condition.params(&[&(limit as i64)])).map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as ImageId).collect())
    }

    fn stats(&self, size_bytes: u64) -> Result<Stats> {
        let images = self.count("SELECT count(*) FROM images")? as usize;
        Ok(Stats {
            data_dir: self.location(),
            images,
            vectors_live: images,
            vectors_tombstoned: 0,
            text_documents: images as u64,
            skipped: self.count("SELECT count(*) FROM skipped WHERE NOT ignored")? as usize,
            model: self.model_info()?,
            size_bytes,
            last_run: self.last_run()?,
        })
    }

    fn size_bytes(&self) -> u64 {
        self.count("SELECT pg_database_size(current_database())").unwrap_or(0) as u64
    }

    fn repair(&mut self, force: bool) -> Result<Vec<String>> {
        let err = |e| self.err(e);
        let mut repaired = Vec::new();
        let mut client = self.connection()?;
        // The vector index is dropped and built anew last (with the memory its graph needs, see
        // `build_memory`) when an older imgsearch built it, or when every index is rebuilt.
        let outdated = self.vector_index_is_outdated()?;
        if outdated || force {
            client.batch_execute("DROP INDEX IF EXISTS images_embedding").map_err(err)?;
        }
        if outdated {
            repaired.push(format!(
                "vector index: built by an older imgsearch, built again with ef_construction {EF_CONSTRUCTION} \
                 (text queries find more of their true best matches)"
            ));
        }
        if force {
            client.batch_execute("REINDEX TABLE images").map_err(err)?;
            repaired.push("every index of the images table rebuilt (REINDEX)".to_string());
        }
        if let Some(dim) = self.dim() {
            let exists: bool =
                client.query_one("SELECT to_regclass('images_embedding') IS NOT NULL", &[]).map_err(err)?.get(0);
            if !exists {
                Self::create_vector_index(&mut *client, dim).map_err(err)?;
                if !outdated && !force {
                    repaired.push("vector index: it was missing, built again".to_string());
                }
            }
        }
        Ok(repaired)
    }

    fn begin_bulk_load(&mut self) -> Result<()> {
        if self.dim().is_none() {
            return Ok(());
        }
        let err = |e| self.err(e);
        let mut client = self.connection()?;
        let mut tx = client.transaction().map_err(err)?;
        // Another loader is building the index: this load keeps it up to date instead of waiting.
        let locked: bool =
            tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&VECTOR_INDEX_LOCK]).map_err(err)?.get(0);
        if !locked {
            return Ok(());
        }
        // Only an empty library: on a large one, rebuilding the index would cost more than
        // keeping it up to date, and searches meanwhile would scan every row. An index missing
        // already (a load that was interrupted) is built when this one ends.
        let (empty, missing): (bool, bool) = tx
            .query_one("SELECT NOT EXISTS (SELECT 1 FROM images), to_regclass('images_embedding') IS NULL", &[])
            .map(|row| (row.get(0), row.get(1)))
            .map_err(err)?;
        if empty || missing {
            tx.batch_execute("DROP INDEX IF EXISTS images_embedding").map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.index_deferred = empty || missing;
        Ok(())
    }

    fn end_bulk_load(&mut self, progress: &ProgressBar) -> Result<()> {
        if let (true, Some(dim)) = (self.index_deferred, self.dim()) {
            let mut client = self.connection()?;
            let builder: i32 = client.query_one("SELECT pg_backend_pid()", &[]).map_err(|e| self.err(e))?.get(0);
            let built = AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| self.show_index_build(builder, &built, progress));
                // Building the index waits for other hosts' writes, which can cross with it.
                let result = retrying(|| {
                    let mut tx = client.transaction()?;
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&VECTOR_INDEX_LOCK])?;
                    Self::create_vector_index(&mut tx, dim)?;
                    tx.commit()
                });
                built.store(true, Ordering::Relaxed);
                result
            })
            .map_err(|e| self.err(e))?;
            self.index_deferred = false;
        }
        Ok(())
    }

    fn optimize(&mut self) -> Result<String> {
        let err = |e| self.err(e);
        self.connection()?.batch_execute("VACUUM (ANALYZE) images").map_err(err)?;
        Ok(format!("images table vacuumed and analysed: {} pictures", self.image_count()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_build_asks_for_the_memory_its_graph_needs_unless_an_operator_chose() {
        const DEFAULT_KB: i64 = 64 * 1024;
        // pgvector's notice at the default: 38,599 pictures of 512 dimensions fill 64 MB; with a
        // quarter of headroom, 29,000 still fit and need no more. More get what they need.
        assert_eq!(memory_for_graph(DEFAULT_KB, "default", 25_000, 512), None);
        let asked = memory_for_graph(DEFAULT_KB, "default", 200_000, 512).unwrap();
        assert!(asked * 1024 > 200_000 * 1_739 && asked * 1024 < 200_000 * 1_739 * 3 / 2, "{asked} kB");
        // A wider model's graph is larger; a huge library is capped.
        assert!(memory_for_graph(DEFAULT_KB, "default", 200_000, 1024).unwrap() > asked);
        assert_eq!(memory_for_graph(DEFAULT_KB, "default", 50_000_000, 512), Some(BUILD_MEMORY_CAP_KB));
        // An operator's setting stands, however small.
        for source in ["configuration file", "user", "database", "client"] {
            assert_eq!(memory_for_graph(1024, source, 200_000, 512), None, "{source}");
        }
    }
}
