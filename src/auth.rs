//! Who may use a server: users with Argon2-hashed passwords, and API tokens, kept with the
//! library so that every server of one library knows the same people.
//!
//! Embedded libraries keep them in `auth.json` inside the data folder, beside (not inside) the
//! sled catalog, so `imgsearch user add` and `token create` work while a server runs: the server
//! notices the file changed. PostgreSQL libraries keep them in the `auth` table. Only hashes are
//! stored: a token is shown once, when it is made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::Location;

/// Everything stored about users and tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthData {
    #[serde(default)]
    pub users: BTreeMap<String, User>,
    #[serde(default)]
    pub tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Argon2id, as a PHC string (algorithm, parameters, salt and hash in one).
    pub password_hash: String,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Short public name for listing and revoking (`tok_…`); not the secret.
    pub id: String,
    pub name: String,
    /// blake3 of the secret: tokens are long random strings, so a fast hash is enough.
    pub secret_hash: String,
    pub read_only: bool,
    pub created_at: u64,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<u64>,
}

/// What a request proved, and so what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name, or the token's id.
    pub name: String,
    pub read_only: bool,
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the operating system's random source works");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// User names people can type and logs can show: letters, digits, `.`, `_`, `-`, `@`.
pub fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadQuery(format!(
            "the user name {name:?} is not allowed: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

pub const MIN_PASSWORD_CHARS: usize = 8;

pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::BadQuery(format!("a password needs at least {MIN_PASSWORD_CHARS} characters")));
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    let salt = SaltString::encode_b64(&bytes).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::BadQuery(format!("cannot hash the password: {e}")))
}

/// A password hash that no password matches: checked against when the user does not exist, so
/// a wrong name takes as long as a wrong password (names cannot be probed by timing).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").expect("valid salt");
        Argon2::default().hash_password(random_hex(16).as_bytes(), &salt).expect("hashes").to_string()
    })
}

impl AuthData {
    /// Whether anyone can sign in or use the API: then every request must say who it is.
    pub fn has_credentials(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// The user, if `password` is theirs.
    pub fn check_password(&self, name: &str, password: &str) -> Option<Principal> {
        let user = self.users.get(name);
        let hash = user.map_or(decoy_hash(), |u| u.password_hash.as_str());
        let parsed = PasswordHash::new(hash).ok()?;
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        (matches && user.is_some()).then(|| Principal { name: name.to_string(), read_only: false })
    }

    /// The token `secret` names, if it exists and has not expired.
    pub fn check_token(&self, secret: &str) -> Option<Principal> {
        let hash = blake3::hash(secret.as_bytes()).to_hex().to_string();
        let token = self.tokens.iter().find(|t| t.secret_hash == hash)?;
        if token.expires_at.is_some_and(|at| at <= now()) {
            return None;
        }
        Some(Principal { name: token.id.clone(), read_only: token.read_only })
    }

    /// Adds a token; returns its secret (shown once, never stored).
    pub fn create_token(&mut self, name: &str, read_only: bool, expires_at: Option<u64>) -> (String, &Token) {
        let secret = format!("isk_{}", random_hex(24));
        let token = Token {
            id: format!("tok_{}", random_hex(4)),
            name: name.to_string(),
            secret_hash: blake3::hash(secret.as_bytes()).to_hex().to_string(),
            read_only,
            created_at: now(),
            expires_at,
        };
        self.tokens.push(token);
        (secret, self.tokens.last().expect("just pushed"))
    }

    /// The tokens as they may be shown: everything but the secret's hash.
    pub fn token_listing(&self) -> serde_json::Value {
        let tokens: Vec<_> = self
            .tokens
            .iter()
            .map(|t| {
                serde_json::json!({"id": t.id, "name": t.name, "read_only": t.read_only,
                                   "created_at": t.created_at, "expires_at": t.expires_at})
            })
            .collect();
        serde_json::json!({ "tokens": tokens })
    }

    /// Removes the token with this id; false when there is none.
    pub fn revoke_token(&mut self, id: &str) -> bool {
        let before = self.tokens.len();
        self.tokens.retain(|t| t.id != id);
        self.tokens.len() != before
    }
}

/// Where a library keeps its users and tokens.
#[derive(Debug, Clone)]
pub enum AuthStore {
    File(PathBuf),
    Postgres(String),
}

impl AuthStore {
    pub fn for_library(location: &Location) -> Self {
        match location {
            Location::Folder(dir) => Self::File(dir.join("auth.json")),
            Location::Postgres { url, .. } => Self::Postgres(url.clone()),
        }
    }

    /// For a file, something that changes whenever the stored data does (cheap to ask): the
    /// server reloads only then. A database has none: servers re-read it on a timer.
    pub fn version(&self) -> Result<Option<String>> {
        match self {
            Self::File(path) => match std::fs::metadata(path) {
                Ok(meta) => Ok(Some(format!("{:?}/{}", meta.modified().ok(), meta.len()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Io { path: path.clone(), source }),
            },
            Self::Postgres(_) => Ok(None),
        }
    }

    pub fn load(&self) -> Result<AuthData> {
        match self {
            Self::File(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    what: path.display().to_string(),
                    reason: format!("{e}; fix or remove the file (users and tokens are then lost)"),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthData::default()),
                Err(source) => Err(Error::Io { path: path.clone(), source }),
            },
            Self::Postgres(url) => crate::store::load_auth(url),
        }
    }

    /// Applies `change` to the stored data atomically (one writer at a time) and returns what
    /// `change` returned.
    pub fn update<T>(&self, change: impl FnOnce(&mut AuthData) -> Result<T>) -> Result<T> {
        match self {
            Self::File(path) => {
                let _lock = FileLock::acquire(&path.with_extension("json.lock"))?;
                let mut data = self.load()?;
                let out = change(&mut data)?;
                write_private(path, &serde_json::to_vec_pretty(&data).expect("auth data serialises"))?;
                Ok(out)
            }
            Self::Postgres(url) => crate::store::update_auth(url, change),
        }
    }
}

/// Writes `bytes` to `path` atomically (temporary file, then rename), readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source| Error::Io { path: path.to_owned(), source };
    let temporary = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary).map_err(io)?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// An exclusive lock held while the file exists: created with `create_new`, removed on drop.
/// A lock left by a killed process is taken over after a minute.
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path) -> Result<Self> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(_) => return Ok(Self(path.to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60));
                    if stale {
                        let _ = std::fs::remove_file(path);
                    } else if std::time::Instant::now() > deadline {
                        return Err(Error::Io { path: path.to_owned(), source: e });
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
                Err(source) => return Err(Error::Io { path: path.to_owned(), source }),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
