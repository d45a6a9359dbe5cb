//! Named roots: several hosts that mount one share at different places (`/mnt/nas/photos`,
//! `/Volumes/photos`) agree on which picture a record is.
//!
//! A file under a root named `photos` is stored as `photos:/2023/beach.jpg`: the root's name, a
//! colon, then its path inside the root. Such a path never starts with `/`, so it cannot be
//! taken for a local absolute path. Each host maps the name back to its own mount
//! ([`Mounts`]): from `--mount NAME=PATH`, else what `index NAME=PATH` last recorded on this
//! host (`mounts.json` in the local data folder), else the path the library recorded for the
//! root (right wherever every host mounts it at the same place).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::catalog::{path_bytes, IndexedRoot, StoredPath};
use super::Library;
use crate::error::{Error, Result};

/// A folder given to `index`, with the name it is stored under, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub name: Option<String>,
    pub path: PathBuf,
}

impl Root {
    /// `NAME=PATH` names the root; anything else is a path. An argument that exists as a file
    /// or folder is always a path (`a=b` may be a folder's name).
    pub fn parse(arg: &str) -> std::result::Result<Self, String> {
        if let Some((name, path)) = arg.split_once('=') {
            if !Path::new(arg).exists() && !name.contains(['/', '\\']) {
                check_name(name)?;
                if path.is_empty() {
                    return Err(format!("`{arg}`: the root {name} needs a folder, e.g. {name}=/mnt/nas/{name}"));
                }
                return Ok(Self { name: Some(name.to_string()), path: PathBuf::from(path) });
            }
        }
        Ok(Self { name: None, path: PathBuf::from(arg) })
    }
}

/// A `NAME=PATH` argument (`--mount`).
pub fn parse_mount(arg: &str) -> std::result::Result<(String, PathBuf), String> {
    match Root::parse(arg)? {
        Root { name: Some(name), path } => Ok((name, path)),
        Root { name: None, .. } => Err(format!("`{arg}`: expected NAME=PATH, e.g. photos=/mnt/nas/photos")),
    }
}

/// Root names: letters, digits, `.`, `_` and `-`, starting with a letter or digit.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot name a root: use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

/// The stored form of a named root itself (`photos:`); its files' paths start with it.
pub fn root_key(name: &str) -> PathBuf {
    PathBuf::from(format!("{name}:"))
}

impl IndexedRoot {
    /// What identifies the root in the library: its name if it has one, else its path.
    pub fn key(&self) -> PathBuf {
        self.name.as_deref().map(root_key).unwrap_or_else(|| self.path.clone())
    }
}

/// The name of the root a stored path lies under, and the path inside it.
pub fn split_named(stored: &Path) -> Option<(&str, &Path)> {
    let Some(Component::Normal(first)) = stored.components().next() else { return None };
    let name = first.to_str()?.strip_suffix(':')?;
    check_name(name).ok()?;
    Some((name, stored.strip_prefix(first).ok()?))
}

/// Whether an indexed root is on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootState {
    Present(PathBuf),
    /// Not there: moved, renamed or deleted (or a share not mounted at its mount point).
    Gone(PathBuf),
    /// A named root this host has no mount for.
    NotMounted,
}

/// Where each named root is mounted on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts(BTreeMap<String, PathBuf>);

const MOUNTS_FILE: &str = "mounts.json";

impl Mounts {
    /// This host's mounts of `library`'s named roots: `flags` (`--mount`) over what `index`
    /// recorded on this host over the paths the library recorded for them.
    pub fn for_host(library: &dyn Library, flags: &[(String, PathBuf)]) -> Result<Self> {
        let mut mounts = BTreeMap::new();
        for root in library.indexed_roots()? {
            if let Some(name) = root.name {
                mounts.insert(name, root.path);
            }
        }
        mounts.extend(Self::remembered(&library.cache_dir())?.0);
        mounts.extend(flags.iter().cloned());
        Ok(Self(mounts))
    }

    /// The mounts `index NAME=PATH` recorded on this host.
    fn remembered(cache_dir: &Path) -> Result<Self> {
        let file = cache_dir.join(MOUNTS_FILE);
        match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Self)
                .map_err(|e| Error::Corrupt { what: file.display().to_string(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(Error::Io { path: file, source }),
        }
    }

    /// Records on this host where the named `roots` are mounted (for later `serve` and `index`).
    pub fn remember(cache_dir: &Path, roots: &[Root]) -> Result<()> {
        let mut known = Self::remembered(cache_dir)?;
        let before = known.clone();
        for root in roots {
            if let Some(name) = &root.name {
                known.0.insert(name.clone(), root.path.clone());
            }
        }
        if known == before {
            return Ok(());
        }
        let file = cache_dir.join(MOUNTS_FILE);
        let io = |source| Error::Io { path: file.clone(), source };
        std::fs::create_dir_all(cache_dir).map_err(io)?;
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&known.0).expect("paths serialize")).map_err(io)?;
        std::fs::rename(&tmp, &file).map_err(io)
    }

    pub fn insert(&mut self, name: String, path: PathBuf) {
        self.0.insert(name, path);
    }

    /// How a local file is stored: under the named root whose mount holds it (the deepest one),
    /// else as its own path.
    pub fn stored(&self, local: &Path) -> StoredPath {
        let named = self
            .0
            .iter()
            .filter_map(|(name, mount)| Some((name, local.strip_prefix(mount).ok()?, mount.components().count())))
            .max_by_key(|(_, _, depth)| *depth);
        match named {
            Some((name, inside, _)) if inside.as_os_str().is_empty() => StoredPath::from_path(&root_key(name)),
            Some((name, inside, _)) => StoredPath::from_path(&root_key(name).join(inside)),
            None => StoredPath::from_path(local),
        }
    }

    /// The bytes a local file is stored under (the catalog's key).
    pub fn stored_bytes(&self, local: &Path) -> Vec<u8> {
        path_bytes(&self.stored(local).to_path_buf())
    }

    /// Where a stored picture is on this host: its named root's mount joined with its path
    /// inside the root. `None` for a root this host does not know.
    pub fn local(&self, stored: &StoredPath) -> Option<PathBuf> {
        let path = stored.to_path_buf();
        match split_named(&path) {
            // A path inside a root never climbs out of it (an imported row could say `..`).
            Some((_, inside)) if inside.components().any(|c| !matches!(c, Component::Normal(_))) => None,
            Some((name, inside)) => Some(self.0.get(name)?.join(inside)),
            None => Some(path),
        }
    }

    /// Where an indexed root is on this host (`None`: a named root this host does not know).
    pub fn root_here(&self, root: &IndexedRoot) -> Option<PathBuf> {
        match &root.name {
            Some(name) => self.0.get(name).cloned(),
            None => Some(root.path.clone()),
        }
    }

    /// Whether an indexed root is on this host now, for people (`stats`, `index`).
    pub fn root_state(&self, root: &IndexedRoot) -> RootState {
        match self.root_here(root) {
            Some(here) if here.exists() => RootState::Present(here),
            Some(here) => RootState::Gone(here),
            None => RootState::NotMounted,
        }
    }

    /// [`Mounts::local`], or an error that says how to tell this host where the root is.
    pub fn local_or_err(&self, stored: &StoredPath) -> Result<PathBuf> {
        self.local(stored).ok_or_else(|| {
            let path = stored.to_path_buf();
            let name = split_named(&path).map(|(name, _)| name).unwrap_or_default();
            Error::UnknownRoot { name: name.to_string() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_root_argument_is_parsed_and_a_bad_name_is_refused() {
        assert_eq!(
            Root::parse("photos=/mnt/nas/photos").unwrap(),
            Root { name: Some("photos".into()), path: "/mnt/nas/photos".into() }
        );
        assert_eq!(Root::parse("/mnt/a=b").unwrap(), Root { name: None, path: "/mnt/a=b".into() });
        assert_eq!(Root::parse("pics").unwrap(), Root { name: None, path: "pics".into() });
        assert!(Root::parse("my photos=/x").unwrap_err().contains("cannot name a root"));
        assert!(Root::parse("photos=").unwrap_err().contains("needs a folder"));
        assert!(parse_mount("/mnt/photos").is_err());
    }

    #[test]
    fn paths_map_between_hosts_through_the_root_name() {
        let mut here = Mounts::default();
        here.insert("photos".into(), "/mnt/nas/photos".into());
        here.insert("deep".into(), "/mnt/nas/photos/deep".into());
        let stored = here.stored(Path::new("/mnt/nas/photos/2023/beach.jpg"));
        assert_eq!(stored.display(), "photos:/2023/beach.jpg");
        // The deepest mount wins.
        assert_eq!(here.stored(Path::new("/mnt/nas/photos/deep/a.jpg")).display(), "deep:/a.jpg");
        // Not under any mount: stored as it is.
        assert_eq!(here.stored(Path::new("/home/me/a.jpg")).display(), "/home/me/a.jpg");
        // Path prefixes are compared by component: /mnt/nas/photos2 is not inside photos.
        assert_eq!(here.stored(Path::new("/mnt/nas/photos2/a.jpg")).display(), "/mnt/nas/photos2/a.jpg");
        assert!(stored.to_path_buf().starts_with(root_key("photos")));

        let mut there = Mounts::default();
        there.insert("photos".into(), "/Volumes/photos".into());
        assert_eq!(there.local(&stored), Some(PathBuf::from("/Volumes/photos/2023/beach.jpg")));
        assert_eq!(Mounts::default().local(&stored), None);
        assert_eq!(there.local(&StoredPath::Utf8("photos:/../../etc/passwd".into())), None);
        let plain = StoredPath::from_path(Path::new("/home/me/a.jpg"));
        assert_eq!(there.local(&plain), Some(PathBuf::from("/home/me/a.jpg")));
    }
}
