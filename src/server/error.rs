//! Every error the API returns, mapped to a status code and a JSON body in exactly one place:
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "not_found", message: message.into() }
    }

    /// A `Range` no byte of the file is in; the response says the file's size (RFC 9110).
    pub fn range_not_satisfiable(size: u64, message: impl Into<String>) -> Response {
        let error = Self { status: StatusCode::RANGE_NOT_SATISFIABLE, code: "bad_range", message: message.into() };
        let mut response = error.into_response();
        let content_range = format!("bytes */{size}").parse().expect("ascii");
        response.headers_mut().insert(axum::http::header::CONTENT_RANGE, content_range);
        response
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self { status: StatusCode::PAYLOAD_TOO_LARGE, code: "payload_too_large", message: message.into() }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
            Error::UnknownLanguage { .. } => (StatusCode::BAD_REQUEST, "bad_lang"),
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::Decode { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_an_image"),
            Error::NoDecoder { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format"),
            Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large"),
            Error::FileChanged { .. } | Error::ContentChanged { .. } => (StatusCode::CONFLICT, "file_changed"),
            Error::UnknownRoot { .. } => (StatusCode::NOT_FOUND, "root_not_mounted"),
            Error::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            // The path no longer leads to a file (deleted, or a folder on it replaced by a file).
            Error::Io { source, .. }
                if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) =>
            {
                (StatusCode::GONE, "file_gone")
            }
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                (StatusCode::FORBIDDEN, "file_unreadable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self { status, code, message: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Busy: a moment is enough for a worker to free up.
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// The longest method name a 405's message repeats (the standard ones have at most 7 letters).
const MAX_METHOD_SHOWN: usize = 32;

/// A 4xx response axum or an extractor wrote on its own (a 405 with no body, a request path
/// that is not UTF-8 in plain text, hyper's body limit), in the API's JSON shape, its headers
/// (`Allow`) kept; any other response unchanged.
pub async fn in_json_shape(response: Response, method: &axum::http::Method) -> Response {
    use axum::http::header;
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !response.status().is_client_error() || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let said = text.ok().filter(|text| !text.is_empty());
    let reason = || status.canonical_reason().unwrap_or("bad request").to_lowercase();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            // A method is any token: a 100 kB one came back whole in the message.
            let shown: String = method.as_str().chars().take(MAX_METHOD_SHOWN).collect();
            let cut = if shown.len() < method.as_str().len() { "…" } else { "" };
            ("method_not_allowed", format!("this route does not take {shown}{cut}: see /api/openapi.json"))
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", said.unwrap_or_else(reason)),
        StatusCode::NOT_FOUND => ("not_found", said.unwrap_or_else(reason)),
        _ => ("bad_request", said.unwrap_or_else(reason)),
    };
    let mut json = ApiError { status, code, message }.into_response();
    for (name, value) in
        parts.headers.iter().filter(|(name, _)| **name != header::CONTENT_TYPE && **name != header::CONTENT_LENGTH)
    {
        json.headers_mut().insert(name.clone(), value.clone());
    }
    json
}
