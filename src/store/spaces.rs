//! Model spaces: one library holds the embeddings of several models, each in its own space — a
//! whole library (catalog, vectors, text index) beside the first one — so that `index --model
//! NEW` builds the new model's space while searches go on in the old one, and nothing breaks
//! while a library changes models.
//!
//! The first space is the library itself (the data folder, or the database's `public` schema);
//! later ones live in `DIR/models/NAME/` or in the schema `imgsearch_space_NAME`. Each records
//! its model, when it was created, and whether an `index` run over it has finished
//! (`space.json` in its folder, the schema's comment in PostgreSQL), readable without opening
//! the space, which another process may hold. Searches use the newest complete space unless
//! told which model to use.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{postgres, Location};
use crate::error::{Error, Result};

/// A space's own record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct SpaceRecord {
    /// The model whose embeddings it holds (`None` for an empty first space).
    model: Option<String>,
    /// Unix milliseconds (0 for a library indexed before spaces existed).
    created_at: u64,
    /// An `index` run over it has finished (until then, searches keep to the older spaces).
    complete: bool,
}

/// A model space of a library.
#[derive(Debug, Clone)]
pub struct Space {
    pub location: Location,
    pub model: Option<String>,
    pub created_at: u64,
    pub complete: bool,
    /// The library's first space (which also holds its users and tokens).
    pub first: bool,
}

const RECORD_FILE: &str = "space.json";
const FOLDER: &str = "models";
/// Prefix of the PostgreSQL schemas of spaces after the first.
const SCHEMA_PREFIX: &str = "imgsearch_space_";

/// A short, stable name for `model`'s space: readable, unique, and a valid folder and schema
/// name (PostgreSQL identifiers stop at 63 bytes).
fn space_name(model: &str) -> String {
    // A hub id whole (`google_siglip2_base_patch16_224`), a local checkpoint by its own name.
    let is_path = model.starts_with(['/', '.', '~']) || model.matches('/').count() > 1 || model.contains('\\');
    let shown =
        if is_path { model.trim_end_matches(['/', '\\']).rsplit(['/', '\\']).next().unwrap_or(model) } else { model };
    let mut readable: String =
        shown.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    readable.truncate(30);
    let hash = blake3::hash(model.as_bytes()).to_hex();
    format!("{}_{}", readable.trim_matches('_'), &hash[..10])
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Whether the data folder `dir` holds a library: its first model space's catalog, or later
/// ones (the first may have been removed).
pub fn holds_a_library(dir: &Path) -> bool {
    super::compaction::holds_catalog(dir) || dir.join(FOLDER).is_dir()
}

/// Every space of the library at `base` (its first location), oldest first.
pub fn list(base: &Location) -> Result<Vec<Space>> {
    let mut spaces = vec![first_space(base)?];
    let later: Vec<Space> = match base {
        Location::Folder(dir) => {
            let folder = dir.join(FOLDER);
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(spaces),
                Err(source) => return Err(Error::Io { path: folder, source }),
            };
            let mut later = Vec::new();
            for entry in entries {
                let path = entry.map_err(|source| Error::Io { path: folder.clone(), source })?.path();
                if let Some(record) = read_record(&path)? {
                    later.push(space(Location::Folder(path), record, false));
                }
            }
            later
        }
        Location::Postgres { url, read_url, cache, .. } => postgres::space_records(url, SCHEMA_PREFIX)?
            .into_iter()
            .filter_map(|(schema, comment)| {
                let record = serde_json::from_str::<SpaceRecord>(&comment?).ok()?;
                let location = Location::Postgres {
                    url: url.clone(),
                    read_url: read_url.clone(),
                    cache: cache.clone(),
                    schema: Some(schema),
                };
                Some(space(location, record, false))
            })
            .collect(),
    };
    spaces.extend(later);
    spaces.sort_by_key(|s| s.created_at);
    Ok(spaces)
}

fn space(location: Location, record: SpaceRecord, first: bool) -> Space {
    Space { location, model: record.model, created_at: record.created_at, complete: record.complete, first }
}

/// The first space: its record, with its model read from it where the record has none (a
/// library older than spaces, or one that `import` or `migrate` filled), recorded for next time.
fn first_space(base: &Location) -> Result<Space> {
    let record = match base {
        Location::Folder(dir) => read_record(dir)?,
        Location::Postgres { url, .. } => {
            postgres::space_record(url, None)?.and_then(|c| serde_json::from_str(&c).ok())
        }
    };
    let never_opened = matches!(base, Location::Folder(dir) if !super::compaction::holds_catalog(dir));
    let record = match record {
        Some(record) if record.model.is_some() => record,
        // Nothing to read yet (and sled moves its id counter on at every open).
        recorded if never_opened => recorded.unwrap_or_default(),
        recorded => match super::open(base) {
            Ok(library) => {
                let model = library.model_info()?.map(|m| m.model);
                drop(library);
                // Indexed before spaces existed, or imported: complete as far as anyone knows.
                let record = SpaceRecord { complete: model.is_some(), model, created_at: 0 };
                if recorded.as_ref() != Some(&record) {
                    write_record(base, &record)?;
                }
                record
            }
            // Another process has the data folder open: what it recorded last will do.
            Err(Error::DataDirLocked { .. }) if recorded.is_some() => recorded.expect("checked"),
            Err(e) => return Err(e),
        },
    };
    Ok(space(base.clone(), record, true))
}

fn read_record(dir: &Path) -> Result<Option<SpaceRecord>> {
    let path = dir.join(RECORD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt { what: path.display().to_string(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path, source }),
    }
}

fn write_record(location: &Location, record: &SpaceRecord) -> Result<()> {
    let json = serde_json::to_string(record).expect("a space record serialises");
    match location {
        Location::Folder(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
            let path = dir.join(RECORD_FILE);
            let partial = dir.join(format!("{RECORD_FILE}.partial"));
            std::fs::write(&partial, json)
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|source| Error::Io { path, source })
        }
        Location::Postgres { url, schema, .. } => postgres::set_space_record(url, schema.as_deref(), &json),
    }
}

/// The space to search: `model`'s if given, else the newest complete one (else the newest with
/// a model: a first `index` that was interrupted is still searched, as before spaces).
pub fn for_search(base: &Location, model: Option<&str>) -> Result<Space> {
    searched(&list(base)?, model).cloned()
}

/// [`for_search`] among the spaces [`list`] gave.
pub fn searched<'a>(spaces: &'a [Space], model: Option<&str>) -> Result<&'a Space> {
    if let Some(model) = model {
        return holding(spaces, model);
    }
    let newest = |complete: bool| spaces.iter().rev().find(|s| s.model.is_some() && (s.complete || !complete));
    Ok(newest(true).or_else(|| newest(false)).unwrap_or_else(|| first(spaces)))
}

fn first(spaces: &[Space]) -> &Space {
    spaces.iter().find(|s| s.first).expect("list holds the first space")
}

/// The space holding `model`'s embeddings, or an error naming the models held.
fn holding<'a>(spaces: &'a [Space], model: &str) -> Result<&'a Space> {
    spaces
        .iter()
        .find(|s| s.model.as_deref() == Some(model))
        .ok_or_else(|| Error::UnknownModelSpace { model: model.to_string(), held: held(spaces) })
}

/// The models a library holds, for messages.
fn held(spaces: &[Space]) -> String {
    let models: Vec<&str> = spaces.iter().filter_map(|s| s.model.as_deref()).collect();
    if models.is_empty() {
        "it holds none yet: run `imgsearch index PATH`".to_string()
    } else {
        format!("it holds {}", models.join(", "))
    }
}

/// The space `model`'s embeddings go into: the one holding them, the first space while it is
/// empty, else a new space (created here, incomplete until [`mark_complete`]).
pub fn for_index(base: &Location, model: &str) -> Result<Location> {
    let spaces = list(base)?;
    if let Ok(space) = holding(&spaces, model) {
        return Ok(space.location.clone());
    }
    let record = SpaceRecord { model: Some(model.to_string()), created_at: now(), complete: false };
    let location = match (&first(&spaces).model, base) {
        (None, _) => base.clone(),
        (Some(_), Location::Folder(dir)) => Location::Folder(dir.join(FOLDER).join(space_name(model))),
        (Some(_), Location::Postgres { url, read_url, cache, .. }) => {
            let schema = format!("{SCHEMA_PREFIX}{}", space_name(model));
            postgres::create_space_schema(url, &schema)?;
            Location::Postgres {
                url: url.clone(),
                read_url: read_url.clone(),
                cache: cache.clone(),
                schema: Some(schema),
            }
        }
    };
    if matches!(location, Location::Postgres { .. }) {
        // Opened once, so that the space's tables exist to hold its record.
        drop(super::open(&location)?);
    }
    write_record(&location, &record)?;
    Ok(location)
}

/// Whether the library holds a space for `model` (else [`for_index`] makes one).
pub fn holds(base: &Location, model: &str) -> Result<bool> {
    Ok(holding(&list(base)?, model).is_ok())
}

/// Takes `model`'s space out again when this run made it and it holds no picture: a run that
/// failed (a checkpoint whose weights do not load) or a file that held nothing must not leave a
/// model that `stats` lists and searches switch to.
pub fn discard_if_empty(base: &Location, model: &str, made_now: bool, pictures: usize) -> Result<()> {
    match made_now && pictures == 0 {
        true => remove(base, model),
        false => Ok(()),
    }
}

/// Records that an `index` run over the space at `location` finished.
pub fn mark_complete(base: &Location, location: &Location) -> Result<()> {
    let space = list(base)?.into_iter().find(|s| s.location == *location);
    if let Some(space) = space.filter(|s| !s.complete) {
        let record = SpaceRecord { model: space.model, created_at: space.created_at, complete: true };
        write_record(location, &record)?;
    }
    Ok(())
}

/// Drops `model`'s space: its folder or schema, or, for the first space, its pictures and
/// model (users and tokens stay). Refused while another process has an embedded space open.
pub fn remove(base: &Location, model: &str) -> Result<()> {
    let spaces = list(base)?;
    let space = holding(&spaces, model)?;
    match &space.location {
        Location::Folder(dir) => {
            // Opening takes the folder's lock: a space in use is not pulled from under a server.
            drop(super::open(&space.location)?);
            if space.first {
                for part in super::DataDir::PARTS {
                    remove_dir(&dir.join(part))?;
                }
                write_record(&space.location, &SpaceRecord::default())?;
            } else {
                remove_dir(dir)?;
            }
        }
        Location::Postgres { url, schema, .. } => match schema {
            Some(schema) => postgres::drop_space_schema(url, schema)?,
            None => {
                postgres::clear_library(url)?;
                write_record(&space.location, &SpaceRecord::default())?;
            }
        },
    }
    Ok(())
}

/// Removes a folder and what it holds; one already gone is fine.
pub(super) fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io { path: path.to_owned(), source: e }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_names_are_readable_distinct_and_short() {
        let a = space_name("google/siglip2-base-patch16-224");
        assert!(a.starts_with("google_siglip2_base_patch16_22"), "{a}");
        assert!(
            space_name("/home/me/models/RemoteCLIP-ViT-B-32.pt#ViT-B-32").starts_with("remoteclip_vit_b_32_pt_vit_b")
        );
        assert!(space_name("./checkpoints/my-clip/").starts_with("my_clip_"));
        assert_ne!(a, space_name("google/siglip2-base-patch16-256"));
        let long = space_name(&"x/".repeat(200));
        assert!(SCHEMA_PREFIX.len() + long.len() <= 63, "{long}");
        assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
}
