//! Who may use the server: sign-in with a session cookie for the web UI, `Authorization:
//! Bearer` tokens for the API, the same-origin rule for requests that change something, and
//! slowing down of repeated failed sign-ins.
//!
//! Sign-in is required whenever the library has users or tokens, and always when the server
//! listens beyond this computer (it then refuses to start without them, unless `--no-auth`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;

use super::error::ApiError;
use super::{AppState, Peer};
use crate::auth::{random_hex, AuthData, AuthStore, Principal};

const SESSION_COOKIE: &str = "imgsearch_session";
/// A session ends this long after sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a PostgreSQL library's users and tokens are read again (a revoked token stops
/// working within this); a data folder's `auth.json` is re-read as soon as it changes.
const DATABASE_REFRESH: Duration = Duration::from_secs(2);
/// Failed sign-ins allowed per client and per user within `FAILURE_WINDOW` before each further
/// attempt must wait, twice as long each time from `FIRST_LOCKOUT`, up to `MAX_LOCKOUT`.
const FREE_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
const FIRST_LOCKOUT: Duration = Duration::from_secs(30);
/// Clients and users whose failed sign-ins are remembered before expired ones are forgotten.
const MAX_TRACKED_FAILURES: usize = 10_000;
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// Paths anyone may reach: the health check, and what signing in needs (its page shows the icon).
fn is_open(path: &str) -> bool {
    matches!(path, "/api/health" | "/login" | "/login.js" | "/style.css" | "/favicon.svg" | "/api/login")
}

/// Whether a request may change something (read-only tokens are refused those): everything but
/// reads and searches (whose POST carries a query, not a change).
fn changes_state(method: &Method, path: &str) -> bool {
    !(method == Method::GET || method == Method::HEAD || (method == Method::POST && path.starts_with("/api/search")))
}

struct Session {
    user: String,
    /// The user's password hash when they signed in: a changed password or a removed user ends
    /// every session at once.
    password_hash: String,
    expires: Instant,
}

struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

pub struct Gate {
    store: AuthStore,
    /// `--no-auth`: nobody is asked who they are.
    disabled: bool,
    /// Listening beyond this computer: sign-in is required even while no one can sign in.
    exposed: bool,
    /// Set once the library was seen with users or tokens: revoking the last of them must lock
    /// everyone out, not open the server to anyone.
    ever_had_credentials: std::sync::atomic::AtomicBool,
    /// Cookies get `Secure` (served over TLS).
    secure_cookies: bool,
    /// `--trust-proxy`: believe `X-Forwarded-For` (the client, for throttling and the log) and
    /// `X-Forwarded-Proto` (HTTPS, for `Secure` cookies) from the reverse proxy in front.
    trust_proxy: bool,
    cache: Mutex<Cached>,
    /// A reload is under way: other requests use the last copy meanwhile (a database that
    /// stopped answering holds up that one reload, not every request).
    reloading: std::sync::atomic::AtomicBool,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Failures>>,
    /// This run's secret for the command line of this computer (see `server::local`): it
    /// searches, whoever else must sign in.
    local_token: Option<String>,
}

struct Cached {
    data: Arc<AuthData>,
    version: Option<String>,
    checked: Instant,
}

impl Gate {
    pub fn new(
        store: AuthStore,
        disabled: bool,
        exposed: bool,
        secure_cookies: bool,
        trust_proxy: bool,
    ) -> crate::Result<Self> {
        let data = store.load()?;
        let version = store.version()?;
        Ok(Self {
            store,
            disabled,
            exposed,
            ever_had_credentials: std::sync::atomic::AtomicBool::new(data.has_credentials()),
            secure_cookies,
            trust_proxy,
            cache: Mutex::new(Cached { data: Arc::new(data), version, checked: Instant::now() }),
            reloading: std::sync::atomic::AtomicBool::new(false),
            sessions: Mutex::default(),
            failures: Mutex::default(),
            local_token: None,
        })
    }

    /// This gate, also letting in requests that carry `token` (read-only).
    pub fn with_local_token(mut self, token: Option<String>) -> Self {
        self.local_token = token;
        self
    }

    /// Whether `secret` is this run's local token (compared in constant time).
    fn is_local_token(&self, secret: &str) -> bool {
        self.local_token.as_ref().is_some_and(|token| {
            token.len() == secret.len() && token.bytes().zip(secret.bytes()).fold(0, |diff, (a, b)| diff | (a ^ b)) == 0
        })
    }

    /// The cached users and tokens while they are still current: a file unchanged since it was
    /// read (one `stat`), a database read less than `DATABASE_REFRESH` ago. `None`: read again.
    fn fresh(&self) -> Option<Arc<AuthData>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let current = match self.store {
            AuthStore::File(_) => self.store.version().ok()? == cache.version,
            AuthStore::Postgres(_) => cache.checked.elapsed() < DATABASE_REFRESH,
        };
        current.then(|| cache.data.clone())
    }

    /// The last users and tokens read.
    fn cached(&self) -> Arc<AuthData> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).data.clone()
    }

    /// Reads the users and tokens again (blocking I/O), outside the cache's lock and one reload
    /// at a time: while one runs, the last copy read answers. A store that cannot be read keeps
    /// the last good copy, and says so.
    fn reload(&self) -> Arc<AuthData> {
        use std::sync::atomic::{AtomicBool, Ordering};
        /// Clears the flag however the reload ends.
        struct Reloading<'a>(&'a AtomicBool);
        impl Drop for Reloading<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        if self.reloading.swap(true, Ordering::AcqRel) {
            return self.cached();
        }
        let _reloading = Reloading(&self.reloading);
        let loaded = self.store.version().and_then(|version| Ok((self.store.load()?, version)));
        // Not read (nor said) again until it changes: a damaged file would otherwise be parsed,
        // and logged, on every request.
        let failed_version = loaded.as_ref().err().and_then(|_| self.store.version().ok());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.checked = Instant::now();
        match loaded {
            Ok((data, version)) => {
                cache.data = Arc::new(data);
                cache.version = version;
            }
            Err(e) => {
                if let Some(version) = failed_version {
                    cache.version = version;
                }
                tracing::error!(target: "imgsearch::auth", "cannot read users and tokens ({e}); using the last ones read")
            }
        }
        cache.data.clone()
    }

    /// The current users and tokens, from a blocking thread.
    fn data(&self) -> Arc<AuthData> {
        self.fresh().unwrap_or_else(|| self.reload())
    }

    /// The current users and tokens from async code: only a reload (a file that changed, a
    /// database every few seconds) goes to a blocking thread, not every request.
    async fn current(self: &Arc<Self>) -> Arc<AuthData> {
        if let Some(data) = self.fresh() {
            return data;
        }
        let gate = self.clone();
        match tokio::task::spawn_blocking(move || gate.reload()).await {
            Ok(data) => data,
            Err(_) => self.cached(),
        }
    }

    fn required(&self, data: &AuthData) -> bool {
        use std::sync::atomic::Ordering;
        if data.has_credentials() {
            self.ever_had_credentials.store(true, Ordering::Relaxed);
        }
        !self.disabled && (self.exposed || self.ever_had_credentials.load(Ordering::Relaxed))
    }

    fn session(&self, headers: &HeaderMap, data: &AuthData) -> Option<Principal> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let key = blake3::hash(id.as_bytes()).to_hex().to_string();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get(&key)?;
        let current = data.users.get(&session.user).map(|u| u.password_hash.as_str());
        if session.expires <= Instant::now() || current != Some(session.password_hash.as_str()) {
            sessions.remove(&key);
            return None;
        }
        Some(Principal { name: session.user.clone(), read_only: false })
    }

    /// Starts a sign-in attempt for `keys`, or says how long they must still wait. The attempt
    /// counts as a failure from the start, in the same lock as the check, and is forgiven only
    /// by a success ([`Self::clear_failures`]): counted after the password check, a burst of
    /// concurrent guesses all passed the check before any was counted (50 guesses instead of 5).
    fn begin_attempt(&self, keys: &[String]) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let locked = keys
            .iter()
            .filter_map(|key| failures.get(key)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        if let Some(wait) = locked {
            return Err(wait);
        }
        if failures.len() >= MAX_TRACKED_FAILURES {
            // Guesses from many addresses must not grow the table without end: forget the
            // entries whose window is over and whose lockout has ended.
            failures.retain(|_, f| now - f.since <= FAILURE_WINDOW || f.locked_until.is_some_and(|u| u > now));
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures { count: 0, since: now, locked_until: None });
            if now - entry.since > FAILURE_WINDOW {
                *entry = Failures { count: 0, since: now, locked_until: None };
            }
            entry.count += 1;
            if entry.count >= FREE_FAILURES {
                let doublings = (entry.count - FREE_FAILURES).min(10);
                entry.locked_until = Some(now + (FIRST_LOCKOUT * 2u32.pow(doublings)).min(MAX_LOCKOUT));
            }
        }
        Ok(())
    }

    fn clear_failures(&self, keys: &[String]) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            failures.remove(key);
        }
    }

    /// The client's address: the socket's, or with `--trust-proxy` the one the proxy appended
    /// last to `X-Forwarded-For` (earlier entries come from the client and prove nothing).
    fn client(&self, socket: std::net::IpAddr, headers: &HeaderMap) -> std::net::IpAddr {
        let forwarded = || {
            let list = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back()?;
            list.rsplit(',').next()?.trim().parse().ok()
        };
        if self.trust_proxy {
            forwarded().unwrap_or(socket)
        } else {
            socket
        }
    }

    /// Whether the browser talks HTTPS to us (or, behind a trusted proxy, to the proxy).
    fn https(&self, headers: &HeaderMap) -> bool {
        let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
        self.secure_cookies || (self.trust_proxy && proto.is_some_and(|p| p.eq_ignore_ascii_case("https")))
    }

    fn session_cookie(&self, value: &str, max_age: u64, https: bool) -> HeaderValue {
        let secure = if https { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("session ids are hex")
    }
}

/// The value of one cookie of the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether a browser sent the request from one of this server's own pages: its `Origin` names
/// this host, or `Sec-Fetch-Site` says same-origin. A request with neither is not trusted.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host)
        }
        _ => false,
    }
}

/// Whether the request's host names this computer: `localhost` (or a name under it, which
/// browsers resolve to loopback themselves) or a loopback address, with or without a port.
fn names_this_computer(request: &Request) -> bool {
    // A URL with its host in it (`GET http://host/…`, and HTTP/2's authority) names the host
    // instead of the Host header, which HTTP then ignores (RFC 9112, 3.2.2).
    let header = request.headers().get(header::HOST).and_then(|v| v.to_str().ok());
    let Some(host) = request.uri().authority().map(|a| a.as_str()).or(header) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A browser fetching for another site's page (by `Sec-Fetch-Site`, which every current browser
/// sends): its `<img>` showing a photo, its script running a search, its form posting an upload.
/// None needs credentials on a server only this computer reaches, and the photos' sizes, the
/// server's work and its answers' timing are the other site's to observe. A link followed to
/// one of the pages (a navigation) is let through; requests without the header (scripts, curl)
/// are not browsers' and are judged by the other rules.
fn fetched_for_another_site(method: &Method, headers: &HeaderMap) -> bool {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let navigation = method == Method::GET
        && value("sec-fetch-mode") == Some("navigate")
        && value("sec-fetch-dest") == Some("document");
    matches!(value("sec-fetch-site"), Some("cross-site" | "same-site")) && !navigation
}

/// A cross-site request (by `Origin` or `Sec-Fetch-Site`): one a browser sent from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName| headers.contains_key(name);
    (has(header::ORIGIN) || headers.contains_key("sec-fetch-site")) && !same_origin(headers)
}

/// Signed-in answers are not kept by the browser (no `Cache-Control` of their own): after
/// signing out, the back button must not show results again.
fn private(mut response: Response) -> Response {
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError { status: StatusCode::UNAUTHORIZED, code: "unauthorized", message: message.into() }.into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn forbidden(code: &'static str, message: &str) -> Response {
    ApiError { status: StatusCode::FORBIDDEN, code, message: message.into() }.into_response()
}

/// The middleware in front of every route.
pub async fn require_auth(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let gate = &state.gate;
    if is_open(&path) {
        return next.run(request).await;
    }
    if fetched_for_another_site(request.method(), request.headers()) {
        return forbidden(
            "cross_site",
            "another site's page asked for this: open imgsearch in its own tab (a link to its pages works)",
        );
    }
    let bearer = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "));
    if bearer.is_some_and(|secret| gate.is_local_token(secret.trim())) {
        if changes_state(request.method(), &path) {
            return forbidden("read_only_token", "the command line's token may search, not change anything");
        }
        let mut request = request;
        request.extensions_mut().insert(Principal { name: "command line".into(), read_only: true });
        let mut response = private(next.run(request).await);
        response.headers_mut().insert(super::local::KNEW_THE_SECRET, HeaderValue::from_static("1"));
        return response;
    }
    let data = gate.current().await;
    if !gate.required(&data) {
        // Nobody signs in on a loopback-only server, so nothing but the Host header tells this
        // computer's own browser tabs from a page whose site name was made to point here (DNS
        // rebinding), which could otherwise read every photo with its path and GPS position.
        if !gate.exposed && !gate.trust_proxy && !names_this_computer(&request) {
            return forbidden(
                "bad_host",
                "this server listens on this computer only and answers to localhost, 127.0.0.1 or [::1]: open it \
                 under one of those names (behind a reverse proxy, start it with --trust-proxy; to reach it from \
                 other machines, add a user with `imgsearch user add` and listen with --addr)",
            );
        }
        return next.run(request).await;
    }
    let headers = request.headers();
    let method = request.method().clone();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let secret = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let Some(principal) = secret.and_then(|s| data.check_token(s)) else {
            return unauthorized("the token is unknown, revoked or expired: make one with `imgsearch token create`");
        };
        if principal.read_only && changes_state(&method, &path) {
            return forbidden("read_only_token", "this token is read-only: it cannot change anything");
        }
        let mut request = request;
        request.extensions_mut().insert(principal);
        return private(next.run(request).await);
    }
    match gate.session(headers, &data) {
        Some(principal) => {
            if changes_state(&method, &path) && !same_origin(headers) {
                return forbidden(
                    "cross_origin",
                    "a signed-in browser may change things only from this server's own pages",
                );
            }
            let mut request = request;
            request.extensions_mut().insert(principal);
            private(next.run(request).await)
        }
        // A page: the sign-in page, which comes back here afterwards.
        None if method == Method::GET && path == "/" => Redirect::to("/login").into_response(),
        None => unauthorized("sign in (the web page, or POST /api/login) or send Authorization: Bearer TOKEN"),
    }
}

#[derive(serde::Deserialize)]
pub struct Credentials {
    user: String,
    password: String,
}

/// `POST /api/login` `{"user", "password"}`: a session cookie, or 401 (429 while slowed down).
pub async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let gate = state.gate.clone();
    if cross_site(&headers) {
        return forbidden("cross_origin", "sign in from this server's own sign-in page");
    }
    let Ok(credentials) = serde_json::from_slice::<Credentials>(&body) else {
        return ApiError::bad_request("bad_json", "send {\"user\": \"NAME\", \"password\": \"…\"}").into_response();
    };
    // A name no user can have is refused before it is checked, counted or logged (1.9 MB names
    // grew the log by 114 MB).
    if let Err(e) = crate::auth::check_user_name(&credentials.user) {
        return ApiError::bad_request("bad_user", e.to_string()).into_response();
    }
    let client = gate.client(client.ip(), &headers);
    let keys = [format!("client {client}"), format!("user {}", credentials.user)];
    if let Err(wait) = gate.begin_attempt(&keys) {
        let seconds = wait.as_secs().max(1);
        tracing::warn!(target: "imgsearch::auth", "sign-in refused for {:?} from {client}: too many failures, {seconds} s to wait", credentials.user);
        let mut response = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_attempts",
            message: format!("too many failed sign-ins: try again in {seconds} s"),
        }
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    // Argon2 takes tens of milliseconds of CPU: off the async threads.
    let checking = gate.clone();
    let user = credentials.user.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let data = checking.data();
        let principal = data.check_password(&credentials.user, &credentials.password);
        principal.map(|p| {
            let hash = data.users[&p.name].password_hash.clone();
            (p, hash)
        })
    })
    .await
    .ok()
    .flatten();
    let Some((principal, password_hash)) = checked else {
        tracing::warn!(target: "imgsearch::auth", "sign-in failed for {user:?} from {client}");
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "bad_credentials",
            message: "wrong user name or password".into(),
        }
        .into_response();
    };
    gate.clear_failures(&keys);
    let id = random_hex(32);
    let key = blake3::hash(id.as_bytes()).to_hex().to_string();
    let session = Session { user: principal.name.clone(), password_hash, expires: Instant::now() + SESSION_LIFETIME };
    gate.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(key, session);
    tracing::info!(target: "imgsearch::auth", "{:?} signed in from {client}", principal.name);
    let mut response = Json(serde_json::json!({"user": principal.name})).into_response();
    let cookie = gate.session_cookie(&id, SESSION_LIFETIME.as_secs(), gate.https(&headers));
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// `POST /api/logout`: ends the session on the server (the cookie alone no longer works).
pub async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        let key = blake3::hash(id.as_bytes()).to_hex().to_string();
        state.gate.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, state.gate.session_cookie("", 0, state.gate.https(&headers)));
    response
}

/// `GET /api/session`: who the request is from (`null` where no sign-in is required).
pub async fn whoami(principal: Option<axum::Extension<Principal>>) -> Json<serde_json::Value> {
    Json(match principal {
        Some(axum::Extension(p)) => serde_json::json!({"user": p.name, "read_only": p.read_only}),
        None => serde_json::json!({"user": null, "read_only": false}),
    })
}

/// `GET /api/tokens`: the tokens, without their secrets.
pub async fn list_tokens(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(state.gate.current().await.token_listing())
}

/// `DELETE /api/tokens/{id}`: revokes a token at once, on every server of the library.
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let store = state.gate.store.clone();
    let revoked = tokio::task::spawn_blocking(move || store.update(|data| Ok(data.revoke_token(&id)))).await;
    match revoked {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => ApiError::not_found("no such token").into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message: e.to_string() }
            .into_response(),
    }
}
