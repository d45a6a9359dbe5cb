//! The HTTP routes. Parameters are parsed by hand (not by axum's extractors) so that every
//! rejection is our JSON error with a message that says what to fix. No parameter ever reaches
//! the file system as a path: files are found by image id through the catalog.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::io::ReaderStream;

use super::auth;
use super::connections::TooSlow;
use super::error::ApiError;
use super::thumbnails::{rendition, thumbnail_version, Rendition};
use super::{open_indexed_file, AppState};
use crate::search::query::Understood;
use crate::search::{Composition, Example, SearchHit, SearchParams, SortOrder, MAX_K, MAX_PARTS};
use crate::store::{ImageId, ImageRecord};

type Shared = Arc<AppState>;
type ApiResult<T> = Result<T, ApiError>;

/// Longest accepted query text (CLIP truncates at 77 tokens anyway).
const MAX_QUERY_CHARS: usize = 1000;
const MAX_OFFSET: usize = 100_000;
/// Longest accepted `lang` (a BCP 47 tag with script and region is under 20 characters).
const MAX_LANGUAGE: usize = 35;
/// Largest JSON request body (a search by vector's 4096-number embedding in full decimal
/// precision takes about 100 KB).
const MAX_JSON_BODY: usize = 1024 * 1024;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const LOGIN_HTML: &str = include_str!("../../web/login.html");
const APP_JS: &str = include_str!("../../web/app.js");
const LOGIN_JS: &str = include_str!("../../web/login.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");
const FAVICON_SVG: &str = include_str!("../../web/favicon.svg");
const OPENAPI_JSON: &str = include_str!("../../web/openapi.json");

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
        .route("/style.css", get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }))
        .route("/favicon.svg", get(|| async { asset(FAVICON_SVG, "image/svg+xml") }))
        .route("/api/openapi.json", get(|| async { asset(OPENAPI_JSON, "application/json") }))
        .route("/api/health", get(super::health::health))
        .route("/login", get(|| async { asset(LOGIN_HTML, "text/html; charset=utf-8") }))
        .route("/login.js", get(|| async { asset(LOGIN_JS, "text/javascript; charset=utf-8") }))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/session", get(auth::whoami))
        .route("/api/tokens", get(auth::list_tokens))
        .route("/api/tokens/{id}", axum::routing::delete(auth::revoke_token))
        .route("/api/stats", get(stats))
        .route("/api/search", get(search).post(search_composed).layer(DefaultBodyLimit::disable()))
        // Our own size check below gives a JSON 413; axum's default limit would answer in plain text.
        .route("/api/search/image", post(search_image).layer(DefaultBodyLimit::disable()))
        .route("/api/search/vector", post(search_vector).layer(DefaultBodyLimit::disable()))
        .route("/api/images/{id}", get(image_info))
        .route(
            "/api/images/{id}/thumbnail",
            get(|state, id, headers| image_rendition(state, id, headers, Rendition::Thumbnail)),
        )
        .route(
            "/api/images/{id}/preview",
            get(|state, id, headers| image_rendition(state, id, headers, Rendition::Preview)),
        )
        .route("/api/images/{id}/file", get(image_file))
        .route("/api/images/{id}/similar", get(similar))
        .route("/api/duplicates", get(duplicates))
        .route("/api/tags", get(tags))
        .route("/api/keywords", get(keywords))
        .fallback(|| async { ApiError::not_found("no such route; see /api/openapi.json") })
        .layer(axum::middleware::from_fn(check_query_string))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_auth))
        .layer(axum::middleware::from_fn(check_head_fields))
        .layer(axum::middleware::from_fn(log_request))
        .layer(axum::middleware::from_fn(every_response))
        .with_state(state)
}

/// What every response gets: errors in the API's JSON shape, also where axum answered on its
/// own, and headers that keep other sites from framing the pages (clickjacking), browsers from
/// guessing a file's type from its bytes, and scripts to the UI's own files. A picture's bytes
/// come from whoever made the picture: opened on their own, they get no script and no origin.
async fn every_response(request: Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let of_a_picture = request.uri().path().starts_with("/api/images/");
    let mut response = super::error::in_json_shape(next.run(request).await, &method).await;
    let policy = match of_a_picture {
        true => "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; frame-ancestors 'none'",
        false => "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    };
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// One line per request: method, route, status, time. The route is the pattern that matched
/// (`/api/images/{id}`), never the query string, a header or the body: queries are private, and
/// headers carry credentials.
async fn log_request(request: Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "(no such route)".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if status.is_server_error() {
        tracing::error!(target: "imgsearch::http", "{method} {route} {} {ms:.1} ms", status.as_u16());
    } else {
        tracing::info!(target: "imgsearch::http", "{method} {route} {} {ms:.1} ms", status.as_u16());
    }
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Runs blocking work (the model, sled, tantivy) off the async threads, once one of the
/// server's workers is free (503 when none frees up in time).
async fn blocking<T: Send + 'static>(state: Shared, f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    let worker = state.work.admit().await?;
    // The worker stays taken until the work itself ends, not when its client gives up: a read
    // stuck on a hung network share then makes the server answer 503, not hang every request.
    let work = move || {
        let _worker = worker;
        f()
    };
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("request handler failed: {e}"),
    })?
}

pub(super) fn engine(state: &AppState) -> std::sync::RwLockReadGuard<'_, crate::search::SearchEngine> {
    state.engine.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn params(query: &HashMap<String, String>) -> ApiResult<SearchParams> {
    let mut params = SearchParams::default();
    if let Some(k) = query.get("k") {
        params.k = k.trim().parse::<usize>().ok().filter(|k| (1..=MAX_K).contains(k)).ok_or_else(|| {
            ApiError::bad_request("bad_k", format!("k must be a whole number from 1 to {MAX_K}, got {k:?}"))
        })?;
    }
    if let Some(offset) = query.get("offset") {
        params.offset = offset.trim().parse::<usize>().ok().filter(|o| *o <= MAX_OFFSET).ok_or_else(|| {
            ApiError::bad_request(
                "bad_offset",
                format!("offset must be a whole number from 0 to {MAX_OFFSET}, got {offset:?}"),
            )
        })?;
    }
    if let Some(min) = query.get("min_score") {
        params.min_score = Some(number_within(min, -1.0, 1.0).ok_or_else(|| {
            ApiError::bad_request("bad_min_score", format!("min_score must be a number from -1 to 1, got {min:?}"))
        })?);
    }
    if let Some(min) = query.get("min_prob") {
        params.min_prob = Some(number_within(min, 0.0, 1.0).ok_or_else(|| {
            ApiError::bad_request("bad_min_prob", format!("min_prob must be a number from 0 to 1, got {min:?}"))
        })?);
    }
    if let Some(lang) = query.get("lang").filter(|lang| !lang.is_empty()) {
        // A language's name, in any form a model may read (see `model::languages`), not any text.
        if lang.len() > MAX_LANGUAGE || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ApiError::bad_request(
                "bad_lang",
                format!("lang must be {}, got {lang:?}", crate::model::languages::NAMED_AS),
            ));
        }
        params.language = Some(lang.clone());
    }
    if let Some(sort) = query.get("sort") {
        params.sort = match sort.as_str() {
            "score" => SortOrder::Score,
            "date" => SortOrder::Date,
            other => {
                return Err(ApiError::bad_request("bad_sort", format!("sort must be `score` or `date`, got {other:?}")))
            }
        };
    }
    Ok(params)
}

/// A number from `low` to `high`, checked before it is rounded to f32: 1.0000000000000002 is
/// out of a 0..1 range even though it rounds to 1.0.
fn number_within(text: &str, low: f64, high: f64) -> Option<f32> {
    text.trim().parse::<f64>().ok().filter(|v| (low..=high).contains(v)).map(|v| v as f32)
}

/// Nothing a person could have meant: spaces, control characters and the invisible ones that
/// only shape text (zero-width spaces and joiners, direction marks, a byte-order mark).
fn is_blank(text: &str) -> bool {
    text.chars().all(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
    })
}

/// Header fields HTTP itself rules on, checked before anything reads them:
/// - the Host header as HTTP/1.1 requires it (RFC 9112, 3.2), before the loopback-only server's
///   check of the host (auth.rs) reads it: one, and present in an HTTP/1.1 request. With two, the
///   first was taken and the second ignored;
/// - an expectation other than `100-continue` (which hyper meets) cannot be met: 417 (RFC 9110,
///   10.1.1), rather than an answer that ignored it.
async fn check_head_fields(request: Request, next: axum::middleware::Next) -> Response {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return ApiError::bad_request("bad_host_header", "the request has more than one Host header: send one")
            .into_response();
    }
    if hosts == 0 && request.version() == axum::http::Version::HTTP_11 && request.uri().authority().is_none() {
        return ApiError::bad_request("bad_host_header", "an HTTP/1.1 request must name its host in a Host header")
            .into_response();
    }
    let expects = request.headers().get_all(header::EXPECT).iter();
    if let Some(unmet) =
        expects.map(|v| String::from_utf8_lossy(v.as_bytes())).find(|v| !v.eq_ignore_ascii_case("100-continue"))
    {
        return ApiError {
            status: StatusCode::EXPECTATION_FAILED,
            code: "expectation_failed",
            message: format!(
                "the request expects {:?}, which this server does not do: send Expect: 100-continue or none",
                unmet.chars().take(32).collect::<String>()
            ),
        }
        .into_response();
    }
    next.run(request).await
}

/// The query string, checked before any route reads it. Its percent-escapes must be UTF-8
/// (`q=%FF`, read leniently, would be searched as replacement characters nobody typed), and an
/// API route's parameter may be given once (`q=cat&q=dog` would search for `dog` alone, silently).
async fn check_query_string(request: Request, next: axum::middleware::Next) -> Response {
    let query = request.uri().query().unwrap_or_default();
    if percent_encoding::percent_decode_str(query).decode_utf8().is_err() {
        return ApiError::bad_request(
            "bad_query",
            "the query string is not UTF-8 once its %-escapes are decoded: encode the text as UTF-8",
        )
        .into_response();
    }
    if request.uri().path().starts_with("/api/") {
        let mut seen = std::collections::HashSet::new();
        if let Some(repeated) =
            form_urlencoded::parse(query.as_bytes()).map(|(name, _)| name).find(|name| !seen.insert(name.clone()))
        {
            return ApiError::bad_request(
                "repeated_parameter",
                format!("{repeated} is given more than once: give each parameter once (put several words in one q)"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

fn hits_response(hits: Vec<SearchHit>, started: Instant) -> Json<serde_json::Value> {
    Json(serde_json::json!({"hits": hits, "took_ms": started.elapsed().as_secs_f64() * 1e3}))
}

async fn search(
    State(state): State<Shared>,
    query: Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let started = Instant::now();
    let params = params(&query)?;
    let q = query.get("q").cloned().unwrap_or_default();
    // Read once: the reading answered is the one searched with ("last summer" depends on today).
    // Blank, or nothing once read (a lone `"`), it asks for nothing: not the whole library.
    let parsed = if is_blank(&q) { None } else { Some(parse_q(&q)?) };
    let Some(parsed) = parsed.filter(|parsed| !parsed.asks_nothing()) else {
        return Err(ApiError::bad_request(
            "empty_query",
            "q is empty: type what to look for, or a filter such as type:jpeg",
        ));
    };
    let understood = parsed.understood();
    let hits = blocking(state.clone(), move || Ok(engine(&state).search_parsed(parsed, &params)?)).await?;
    Ok(with_reading(hits_response(hits, started), understood))
}

/// `q` in the query syntax, at most [`MAX_QUERY_CHARS`] long.
fn parse_q(q: &str) -> ApiResult<crate::search::ParsedQuery> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request("query_too_long", format!("q is longer than {MAX_QUERY_CHARS} characters")));
    }
    crate::search::parse(q).map_err(|e| ApiError::bad_request("bad_query", e.0))
}

/// The picture of an upload: multipart field `image`, or the raw request body; and the name it
/// goes by in messages and decoding: its file name where the multipart field gives one (the
/// extension tells a camera RAW from a TIFF), else the one [`unnamed_upload`] gives.
async fn upload_bytes(request: Request, limit: usize) -> ApiResult<(Bytes, PathBuf)> {
    let too_large = || ApiError::too_large(format!("the upload is over the {limit}-byte limit (--upload-limit)"));
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
    let is_multipart = content_type.as_deref().is_some_and(|v| v.starts_with("multipart/form-data"));
    let (parts, bytes) = body_within(request, limit, too_large).await?;
    if !is_multipart {
        return Ok((bytes, unnamed_upload(content_type.as_deref())));
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad_request("bad_multipart", format!("cannot read the multipart body: {e}")))?;
    while let Some(field) =
        multipart.next_field().await.map_err(|e| ApiError::bad_request("bad_multipart", e.to_string()))?
    {
        if field.name() == Some("image") {
            // Only the name's last part: the client's folders are none of our business.
            let name = field
                .file_name()
                .and_then(|name| Path::new(name).file_name())
                .map(PathBuf::from)
                .unwrap_or_else(|| unnamed_upload(field.content_type().map(str::to_ascii_lowercase).as_deref()));
            let bytes = field.bytes().await.map_err(|e| ApiError::bad_request("bad_multipart", e.to_string()))?;
            return Ok((bytes, name));
        }
    }
    Err(ApiError::bad_request("missing_image", "the multipart body has no field named `image`"))
}

/// The name an upload without a file name goes by: `upload`, with the extension its Content-Type
/// names where that is the only way to know the format (TGA has no magic number; the server sends
/// it as `image/x-targa`).
fn unnamed_upload(content_type: Option<&str>) -> PathBuf {
    let media_type = content_type.and_then(|t| t.split(';').next()).map(str::trim);
    match media_type {
        Some("image/x-tga" | "image/x-targa" | "image/tga" | "image/targa") => PathBuf::from("upload.tga"),
        _ => PathBuf::from("upload"),
    }
}

async fn search_image(
    State(state): State<Shared>,
    query: Query<HashMap<String, String>>,
    request: Request,
) -> ApiResult<Json<serde_json::Value>> {
    let started = Instant::now();
    let params = params(&query)?;
    // `q` narrows the picture's search with filters, or composes it with texts: "like this
    // picture, but at night" is `q=at night`.
    let parsed = query.get("q").map(|q| parse_q(q)).transpose()?.unwrap_or_default();
    let _held = state.work.admit_upload().await?;
    let (bytes, upload) = upload_bytes(request, state.options.upload_limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty_upload",
            "no image in the request: send it as multipart field `image` or as the body",
        ));
    }
    let max_pixels = state.options.max_pixels;
    let composed = !parsed.text.trim().is_empty() || !parsed.not.is_empty();
    let understood = composed.then(|| parsed.understood());
    let hits = blocking(state.clone(), move || {
        let engine = engine(&state);
        if !composed {
            return Ok(engine.search_image(&bytes, &upload, max_pixels, &parsed.filters, &params)?);
        }
        let example = Example::Embedding(engine.embed_picture(&bytes, &upload, max_pixels)?);
        let composition = Composition { texts: parsed.parts, not: parsed.not, like: vec![example] };
        Ok(engine.search_composed(&composition, &parsed.filters, &params)?)
    })
    .await?;
    Ok(match understood {
        Some(understood) => with_reading(hits_response(hits, started), understood),
        None => hits_response(hits, started),
    })
}

/// A `q` that may hold filters only (the picture or vector is the query), read: its filters,
/// and what `understood` says of them.
fn filters_only(q: Option<&String>, search: &str) -> ApiResult<crate::search::ParsedQuery> {
    let Some(q) = q else { return Ok(crate::search::ParsedQuery::default()) };
    crate::search::parse_filters_only(q, &format!("`q` of {search}"))
        .map_err(|e| ApiError::bad_request("bad_query", e.0))
}

/// A request's body of at most `limit` bytes, with the rest of the request. A body announced as
/// larger is refused before any of it is read (or `100 Continue` sent).
async fn body_within(
    request: Request,
    limit: usize,
    too_large: impl FnOnce() -> ApiError,
) -> ApiResult<(axum::http::request::Parts, Bytes)> {
    let announced = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| body_error(&e, too_large))?;
    Ok((parts, bytes))
}

/// What reading a body failed on, for the client: its size limit (`too_large`), the rate it must
/// arrive at (408), or a body that broke off or is not valid chunked encoding (a bad request).
fn body_error(e: &axum::Error, too_large: impl FnOnce() -> ApiError) -> ApiError {
    let mut causes = std::iter::successors(std::error::Error::source(e), |cause| cause.source());
    match causes.find(|cause| cause.is::<http_body_util::LengthLimitError>() || cause.is::<TooSlow>()) {
        Some(cause) if cause.is::<TooSlow>() => ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "slow_body",
            message: format!("{cause}: send it again over a faster connection"),
        },
        Some(_) => too_large(),
        None => ApiError::bad_request("bad_body", format!("the request body could not be read: {e}")),
    }
}

/// A JSON object request body of at most [`MAX_JSON_BODY`] bytes; `expected` says what it holds.
async fn json_object(request: Request, expected: &str) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    let too_large = || ApiError::too_large(format!("the JSON body is over the {MAX_JSON_BODY}-byte limit"));
    let (_, body) = body_within(request, MAX_JSON_BODY, too_large).await?;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_json", format!("the body is not valid JSON: {e}")))?;
    match json {
        serde_json::Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::bad_request("bad_json", format!("the body must be a JSON object {expected}"))),
    }
}

/// The paging and sorting fields of a JSON body (`k`, `offset`, `min_score`, `min_prob`, `sort`, `q`,
/// `lang`), as
/// the text `params` checks; false for any other field.
fn scalar_field(name: &str, value: &serde_json::Value, scalars: &mut HashMap<String, String>) -> ApiResult<bool> {
    if !matches!(name, "k" | "offset" | "min_score" | "min_prob" | "sort" | "q" | "lang") {
        return Ok(false);
    }
    match value {
        serde_json::Value::Null => {}
        serde_json::Value::String(text) => {
            scalars.insert(name.to_string(), text.clone());
        }
        serde_json::Value::Number(number) if matches!(name, "k" | "offset" | "min_score" | "min_prob") => {
            scalars.insert(name.to_string(), number.to_string());
        }
        _ => {
            return Err(ApiError::bad_request(
                "bad_json",
                format!(
                    "`{name}` must be {}",
                    if matches!(name, "sort" | "q" | "lang") { "a string" } else { "a number" }
                ),
            ))
        }
    }
    Ok(true)
}

/// `POST /api/search`: a composed query, `{"text", "not": [..], "like": [ids], "k", "offset",
/// "min_score", "sort", "q"}`. `text` is read with the query syntax (weights, `-word`, filters);
/// `not` adds texts to move away from, `like` pictures of the library to look like; `q` holds
/// filters only.
async fn search_composed(State(state): State<Shared>, request: Request) -> ApiResult<Json<serde_json::Value>> {
    let started = Instant::now();
    let fields = json_object(request, "with `text`, `not` and/or `like`").await?;
    let (mut text, mut not, mut like) = (String::new(), Vec::new(), Vec::new());
    let mut scalars = HashMap::new();
    let list_error =
        |name: &str, of: &str| ApiError::bad_request("bad_json", format!("`{name}` must be a list of {of}"));
    for (name, value) in &fields {
        if scalar_field(name, value, &mut scalars)? {
            continue;
        }
        match (name.as_str(), value) {
            ("text", serde_json::Value::String(t)) => text = t.clone(),
            ("text", serde_json::Value::Null) => {}
            ("not", serde_json::Value::Array(items)) => {
                not = items
                    .iter()
                    .map(|t| t.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| list_error("not", "strings"))?;
            }
            ("like", serde_json::Value::Array(items)) => {
                like = items
                    .iter()
                    .map(serde_json::Value::as_u64)
                    .collect::<Option<_>>()
                    .ok_or_else(|| list_error("like", "image ids (whole numbers)"))?;
            }
            (other, _) => {
                return Err(ApiError::bad_request(
                    "bad_json",
                    format!(
                        "unexpected field or type: {other:?}; the body takes `text` (a string), `not` (strings), \
                         `like` (image ids), `k`, `offset`, `min_score` (numbers), `sort` and `q` (strings)"
                    ),
                ))
            }
        }
    }
    let too_long = |what: &str| {
        ApiError::bad_request("query_too_long", format!("{what} is longer than {MAX_QUERY_CHARS} characters"))
    };
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(too_long("text"));
    }
    if not.iter().any(|t: &String| t.chars().count() > MAX_QUERY_CHARS) {
        return Err(too_long("a text of `not`"));
    }
    let params = params(&scalars)?;
    let parsed = crate::search::parse(&text).map_err(|e| ApiError::bad_request("bad_query", e.0))?;
    if parsed.parts.len() + parsed.not.len() + not.len() + like.len() > MAX_PARTS {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("at most {MAX_PARTS} texts and pictures in the text, `not` and `like` together"),
        ));
    }
    let beside = filters_only(scalars.get("q"), "a composed search")?;
    let mut understood = parsed.understood();
    understood.away_from.extend(not.iter().cloned());
    // The filters of `q` are read too, and said: they narrow the search as the text's own do.
    let read_beside = beside.understood();
    understood.filters.extend(read_beside.filters);
    understood.when = understood.when.or(read_beside.when);
    let mut filters = parsed.filters;
    filters.extend(beside.filters);
    let composition = Composition {
        texts: parsed.parts,
        not: parsed.not.into_iter().chain(not).collect(),
        like: like.into_iter().map(Example::Indexed).collect(),
    };
    let hits =
        blocking(state.clone(), move || Ok(engine(&state).search_composed(&composition, &filters, &params)?)).await?;
    Ok(with_reading(hits_response(hits, started), understood))
}

/// A hits response with how the query was read.
fn with_reading(Json(mut response): Json<serde_json::Value>, understood: Understood) -> Json<serde_json::Value> {
    response["understood"] = serde_json::to_value(understood).expect("a reading serialises");
    Json(response)
}

/// `POST /api/search/vector`: `{"vector": [..], "k", "offset", "min_score", "sort", "q"}`. The
/// scalar fields go through the same checks as `/api/search`'s query parameters.
async fn search_vector(State(state): State<Shared>, request: Request) -> ApiResult<Json<serde_json::Value>> {
    let started = Instant::now();
    let fields = json_object(request, "with a `vector` field").await?;
    let mut vector = None;
    let mut scalars = HashMap::new();
    for (name, value) in fields {
        if scalar_field(&name, &value, &mut scalars)? {
            continue;
        }
        match (name.as_str(), value) {
            ("vector", serde_json::Value::Array(numbers)) => {
                let numbers: Option<Vec<f32>> = numbers.iter().map(|n| n.as_f64().map(|n| n as f32)).collect();
                vector =
                    Some(numbers.ok_or_else(|| {
                        ApiError::bad_request("bad_vector", "`vector` must be a list of numbers only")
                    })?);
            }
            ("vector", _) => return Err(ApiError::bad_request("bad_vector", "`vector` must be a list of numbers")),
            (other, _) => {
                return Err(ApiError::bad_request(
                    "bad_json",
                    format!(
                        "unexpected field or type: {other:?}; the body takes `vector` (numbers), `k`, `offset`, \
                         `min_score` (numbers), `sort` and `q` (strings)"
                    ),
                ))
            }
        }
    }
    let vector = vector.ok_or_else(|| ApiError::bad_request("bad_vector", "the body has no `vector` field"))?;
    let params = params(&scalars)?;
    let filters = filters_only(scalars.get("q"), "a search by vector")?.filters;
    let hits = blocking(state.clone(), move || Ok(engine(&state).search_vector(&vector, &filters, &params)?)).await?;
    Ok(hits_response(hits, started))
}

fn parse_id(id: &str) -> ApiResult<ImageId> {
    id.parse().map_err(|_| ApiError::bad_request("bad_id", format!("image ids are whole numbers, got {id:?}")))
}

fn record(state: &AppState, id: ImageId) -> ApiResult<ImageRecord> {
    record_in(&engine(state), id)
}

fn record_in(engine: &crate::search::SearchEngine, id: ImageId) -> ApiResult<ImageRecord> {
    engine.library().image_meta(id)?.ok_or_else(|| ApiError::not_found(format!("no image with id {id}")))
}

/// A record with its library's cache folder and this host's mounts of its roots, taken together
/// (the served library can change between two reads), so that its file is read outside the lock.
fn served_record(
    state: &AppState,
    id: ImageId,
) -> ApiResult<(ImageRecord, std::path::PathBuf, crate::store::roots::Mounts)> {
    let engine = engine(state);
    Ok((record_in(&engine, id)?, engine.library().cache_dir(), engine.mounts().clone()))
}

async fn image_info(State(state): State<Shared>, UrlPath(id): UrlPath<String>) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_id(&id)?;
    let record = blocking(state.clone(), move || record(&state, id)).await?;
    let mut info = serde_json::json!({
        "id": record.id,
        "path": record.file_path().display(),
        "at_seconds": record.video_seconds(),
        "width": record.width,
        "height": record.height,
        "format": record.format,
        "size": record.size,
        "taken": record.facts.taken.map(crate::search::iso_date),
        "camera_make": record.facts.camera_make,
        "camera_model": record.facts.camera_model,
        "title": record.facts.title,
        "description": record.facts.description,
        "keywords": record.facts.keywords,
        "rating": record.facts.rating,
        "gps": record.facts.place(),
        // The city it was taken in or near ("Lisbon, Portugal"), by the gazetteer `near:` reads.
        "place": record.facts.place().and_then(|(lat, lon)| crate::geo::places::name_of(lat, lon)).map(|c| c.label()),
        "tags": record.tags,
        "thumbnail": format!("/api/images/{}/thumbnail", record.id),
        "preview": format!("/api/images/{}/preview", record.id),
        "file": format!("/api/images/{}/file", record.id),
    });
    // As in a search hit: the exact bytes of a path that is not UTF-8.
    if let Some(bytes) = record.file_path().raw_bytes() {
        info["path_bytes"] = bytes.into();
    }
    Ok(Json(info))
}

/// `GET /api/images/{id}/thumbnail` and `/preview`: an upright JPEG of the picture, cached.
async fn image_rendition(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    kind: Rendition,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let known = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (etag, bytes) = blocking(state.clone(), move || {
        let (record, cache, mounts) = served_record(&state, id)?;
        let etag = format!("\"{}\"", thumbnail_version(&record));
        if known.is_some_and(|known| known.split(',').any(|tag| tag.trim() == etag)) {
            return Ok((etag, None));
        }
        // Indexed pictures, not uploads: as large as `index` takes them by default.
        let max_pixels = state.options.max_pixels.max(crate::ingest::decode::DEFAULT_MAX_PIXELS);
        Ok((etag, Some(rendition(&cache, &record, &mounts, max_pixels, kind)?)))
    })
    .await?;
    // Private (signed-in pictures stay out of shared caches), and checked on every use: an id
    // can name another picture later (a changed file, another model's space).
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache")),
        (header::ETAG, HeaderValue::from_str(&etag).expect("hex in quotes")),
    ];
    Ok(match bytes {
        None => (StatusCode::NOT_MODIFIED, cache).into_response(),
        Some(bytes) => (cache, [(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"))], bytes).into_response(),
    })
}

/// `GET /api/images/{id}/file`: the original file, streamed. One byte range may be asked for
/// (`Range: bytes=…`), which a browser needs to seek in a video.
async fn image_file(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let id = parse_id(&id)?;
    let (file, size, format, name) = blocking(state.clone(), move || {
        let (record, _, mounts) = served_record(&state, id)?;
        let path = record.file_path().to_path_buf();
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        Ok((open_indexed_file(&record, &mounts)?, record.size, record.format, name))
    })
    .await?;
    let content_type = HeaderValue::from_static(content_type(&format));
    // Its own name for a download (the UI's "original" link would save every one as `file`),
    // in RFC 8187's encoding, which carries any character in ASCII.
    let encoded = percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
    let disposition = format!("inline; filename*=UTF-8''{encoded}").parse::<HeaderValue>().expect("ascii");
    let disposition = (header::CONTENT_DISPOSITION, disposition);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(asked) => match byte_range(asked, size) {
            Some(range) => range,
            None => {
                let why = format!("the range {asked:?} is not a range of bytes within the file's {size} bytes");
                return Ok(ApiError::range_not_satisfiable(size, why));
            }
        },
    };
    let mut file = tokio::fs::File::from_std(file);
    let accept_ranges = (header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Streamed: a 100 MB panorama or a 4 GB video is not held in memory per request.
    Ok(match range {
        None => {
            let body = Body::from_stream(ReaderStream::new(file));
            let headers = [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_LENGTH, size.into()),
                accept_ranges,
                disposition,
            ];
            (headers, body).into_response()
        }
        Some((first, last)) => {
            let io = |source| crate::Error::Io { path: format!("picture {id}").into(), source };
            file.seek(std::io::SeekFrom::Start(first)).await.map_err(io)?;
            let length = last - first + 1;
            let body = Body::from_stream(ReaderStream::new(file.take(length)));
            let content_range = format!("bytes {first}-{last}/{size}").parse().expect("ascii");
            let headers = [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_LENGTH, length.into()),
                (header::CONTENT_RANGE, content_range),
                accept_ranges,
                disposition,
            ];
            (StatusCode::PARTIAL_CONTENT, headers, body).into_response()
        }
    })
}

/// The media type of a file by its format: the `image` crate's own extension for it (see the
/// pipeline), or one it does not know (HEIF's, a RAW format's, a video's extension).
fn content_type(format: &str) -> &'static str {
    match format {
        "heic" => "image/heic",
        "heif" => "image/heif",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "avi" => "video/x-msvideo",
        "3gp" => "video/3gpp",
        "mts" | "m2ts" => "video/mp2t",
        "mpg" | "mpeg" => "video/mpeg",
        "wmv" => "video/x-ms-wmv",
        "ogv" => "video/ogg",
        _ => image::ImageFormat::from_extension(format).map_or("application/octet-stream", |f| f.to_mime_type()),
    }
}

/// A `Range` header → the first and last byte it asks for: `Ok(None)` for a header that asks
/// for nothing this server splits (several ranges: the whole file is sent, as RFC 9110 allows),
/// `None` for one no byte of the file satisfies.
fn byte_range(header: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Some(None); // another unit: ignored
    };
    if spec.contains(',') {
        return Some(None);
    }
    let (first, last) = spec.trim().split_once('-')?;
    // A number of digits past u64 is past any file's end (the end is clamped to the file's).
    let number = |text: &str| {
        let text = text.trim();
        match text.parse::<u64>() {
            Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => Some(u64::MAX),
            parsed => parsed.ok(),
        }
    };
    let (first, last) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let length = number(suffix).filter(|&n| n > 0)?;
            (size.saturating_sub(length), size.checked_sub(1)?)
        }
        (first, "") => (number(first)?, size.checked_sub(1)?),
        (first, last) => (number(first)?, number(last)?.min(size.checked_sub(1)?)),
    };
    (first <= last && first < size).then_some(Some((first, last)))
}

async fn similar(
    State(state): State<Shared>,
    UrlPath(id): UrlPath<String>,
    query: Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let started = Instant::now();
    let id = parse_id(&id)?;
    let params = params(&query)?;
    let hits = blocking(state.clone(), move || Ok(engine(&state).similar_to(id, &params)?)).await?;
    Ok(hits_response(hits, started))
}

/// `GET /api/duplicates?near=&burst=&burst_seconds=` → `{"groups": [{"kind", "ids", "paths", "best"}]}`.
async fn duplicates(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    use crate::search::duplicates::{find_duplicates, DuplicateOptions};
    let mut options = DuplicateOptions::default();
    for (name, target) in [("near", &mut options.near), ("burst", &mut options.burst)] {
        if let Some(value) = query.get(name) {
            *target = number_within(value, -1.0, 1.0).ok_or_else(|| {
                ApiError::bad_request("bad_threshold", format!("{name} must be a number from -1 to 1, got {value:?}"))
            })?;
        }
    }
    if let Some(value) = query.get("burst_seconds") {
        options.burst_seconds =
            value.trim().parse::<i64>().ok().filter(|s| (0..=86_400).contains(s)).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_threshold",
                    format!("burst_seconds must be a whole number from 0 to 86400, got {value:?}"),
                )
            })?;
    }
    let groups = blocking(state.clone(), move || Ok(find_duplicates(engine(&state).library(), &options)?)).await?;
    Ok(Json(serde_json::json!({ "groups": groups })))
}

/// `GET /api/tags` → `{"tags": [{"tag", "count"}]}`, the most frequent first.
async fn tags(State(state): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    let counts = blocking(state.clone(), move || Ok(crate::search::tags::counts(engine(&state).library())?)).await?;
    Ok(Json(serde_json::json!({ "tags": counts })))
}

/// `GET /api/keywords` → `{"keywords": [{"keyword", "count"}]}`: the keywords people gave
/// pictures (people's names among them), the most frequent first.
async fn keywords(State(state): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    let counts =
        blocking(state.clone(), move || Ok(crate::search::tags::keyword_counts(engine(&state).library())?)).await?;
    Ok(Json(serde_json::json!({ "keywords": counts })))
}

async fn stats(State(state): State<Shared>) -> ApiResult<Json<serde_json::Value>> {
    blocking(state.clone(), move || {
        // The lock also makes concurrent requests wait for one measurement instead of each walking.
        let size = {
            let mut cached = state.folder_size.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match *cached {
                Some((at, size)) if at.elapsed() < super::FOLDER_SIZE_MAX_AGE => size,
                _ => {
                    let size = engine(&state).library().size_bytes();
                    *cached = Some((Instant::now(), size));
                    size
                }
            }
        };
        let engine = engine(&state);
        let mut stats = serde_json::to_value(engine.library().stats(size)?).expect("stats serialise");
        stats["query_cache"] = serde_json::to_value(engine.query_cache_stats()).expect("counts serialise");
        Ok(Json(stats))
    })
    .await
}
