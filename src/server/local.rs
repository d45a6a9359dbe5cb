//! The command line's way to a server that holds its data folder. An embedded library opens in
//! one process at a time, so while `serve` runs (as a service, say) `imgsearch search` could not
//! open it. `serve` writes `server.json` into the data folder, readable by its owner only: where
//! it listens, and a secret that lets whoever can read the folder search through the server
//! (they can read its catalog anyway). `search` asks the server when it finds the folder locked.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::search::SearchHit;

const FILE: &str = "server.json";

/// The response header by which the server says it knew the secret: whatever answers at the
/// address of a stale `server.json` (another library's server, say) is not asked.
pub const KNEW_THE_SECRET: &str = "x-imgsearch-local";

/// What `server.json` holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Announcement {
    /// Where this computer reaches the server (a loopback address where it listens on all).
    pub url: String,
    /// Sent as `Authorization: Bearer`: it may search, not change anything.
    pub token: String,
}

/// The announcement of a running server, taken back when it stops.
pub struct Announced {
    path: PathBuf,
    token: String,
}

impl Drop for Announced {
    fn drop(&mut self) {
        // A second server started on the folder meanwhile (after this one lost it) wrote its own.
        if find_in(&self.path).is_some_and(|written| written.token == self.token) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A secret for one run of the server: 32 random bytes, hex.
pub fn new_token() -> String {
    crate::auth::random_hex(32)
}

/// Writes `server.json` into `folder` for a server listening at `local`.
pub fn announce(folder: &Path, local: SocketAddr, https: bool, token: &str) -> Result<Announced> {
    let path = folder.join(FILE);
    let announcement = Announcement { url: reachable_url(local, https), token: token.to_owned() };
    let written = folder.join(format!(".{FILE}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&written)?;
        file.write_all(serde_json::to_string(&announcement).expect("an announcement serialises").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&written, &path)
    };
    write().map_err(|source| Error::Write { path: path.clone(), source })?;
    Ok(Announced { path, token: token.to_owned() })
}

/// A server that listens on every address is reached on this computer's own.
fn reachable_url(local: SocketAddr, https: bool) -> String {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{}://{}", if https { "https" } else { "http" }, SocketAddr::new(ip, local.port()))
}

/// The server announced in the data folder `folder`, if one is.
pub fn find(folder: &Path) -> Option<Announcement> {
    find_in(&folder.join(FILE))
}

fn find_in(path: &Path) -> Option<Announcement> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A search the server runs for the command line.
pub enum Ask<'a> {
    /// `GET /api/search` with this query string (q, k, offset, sort, min_score, min_prob).
    Text(&'a [(&'a str, String)]),
    /// `POST /api/search/image` with the picture's bytes and name, and that query string.
    Image { query: &'a [(&'a str, String)], name: &'a str, bytes: &'a [u8] },
}

/// Why the server gave no hits: it is not there (a stale `server.json`: nothing listens at its
/// address, or something else does), or the search failed, for the reason given.
pub enum Refused {
    NotThere,
    Failed(String),
}

fn agent(within: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(within))
        // Its certificate names the host people reach it by, not the loopback address asked
        // here; the secret authenticates this request, and reads no more than the folder holds.
        .tls_config(ureq::tls::TlsConfig::builder().disable_verification(true).build())
        .build()
        .into()
}

/// Whether the announced server is the one running (it knows its secret).
pub fn answers(server: &Announcement) -> bool {
    let asked = agent(Duration::from_secs(10))
        .get(format!("{}/api/stats", server.url))
        .header("Authorization", &format!("Bearer {}", server.token))
        .call();
    asked.is_ok_and(|response| response.headers().contains_key(KNEW_THE_SECRET))
}

/// Asks the announced server; its hits, as it found them.
pub fn ask(server: &Announcement, ask: Ask) -> std::result::Result<Vec<SearchHit>, Refused> {
    // The server's own limits (its queue, its model) end a search well before this.
    let agent = agent(Duration::from_secs(600));
    let bearer = format!("Bearer {}", server.token);
    let query_string = |pairs: &[(&str, String)]| {
        let mut url = form_urlencoded::Serializer::new(String::new());
        for (key, value) in pairs {
            url.append_pair(key, value);
        }
        url.finish()
    };
    // A server stops reading an upload over its limit and closes the connection.
    let over_limit = match ask {
        Ask::Image { .. } => "; a picture over the server's --upload-limit is refused",
        Ask::Text(_) => "",
    };
    let sent = match ask {
        Ask::Text(query) => agent
            .get(format!("{}/api/search?{}", server.url, query_string(query)))
            .header("Authorization", &bearer)
            .call(),
        Ask::Image { query, name, bytes } => {
            let boundary = format!("imgsearch-{}", crate::auth::random_hex(12));
            let file_name = name.replace(['"', '\r', '\n'], "_");
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{file_name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(bytes);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            agent
                .post(format!("{}/api/search/image?{}", server.url, query_string(query)))
                .header("Authorization", &bearer)
                .header("Content-Type", &format!("multipart/form-data; boundary={boundary}"))
                .send(&body[..])
        }
    };
    let mut response = sent.map_err(|e| match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => Refused::NotThere,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => Refused::NotThere,
        other => Refused::Failed(format!("the request failed ({other}){over_limit}")),
    })?;
    if !response.headers().contains_key(KNEW_THE_SECRET) {
        return Err(Refused::NotThere);
    }
    let status = response.status();
    let body =
        response.body_mut().with_config().limit(1 << 30).read_to_vec().map_err(|e| Refused::Failed(e.to_string()))?;
    let answer: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| Refused::Failed(format!("an answer that is not JSON ({e})")))?;
    if !status.is_success() {
        let message = answer["error"]["message"].as_str().unwrap_or("no message").to_owned();
        return Err(Refused::Failed(format!("{message} (HTTP {})", status.as_u16())));
    }
    serde_json::from_value(answer["hits"].clone()).map_err(|e| Refused::Failed(format!("hits it sent: {e}")))
}
