//! Requests the server cannot read as HTTP are answered by hyper itself, before any of the
//! server's code runs: 400 for a request line or header that is not HTTP/1.1, 414 for a URL over
//! 65,534 bytes, 431 for more than 100 headers or over 128 kB of them, 408 for a head that took
//! too long. Each came with an empty body, where every other 4xx here is JSON (`error.rs`): they
//! are rewritten on their way out into the same shape.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose hyper-made 4xx answers go out as JSON.
pub struct JsonAnswers<S> {
    io: S,
    /// The JSON answer written in place of hyper's, and how much of it is out.
    answer: Option<(Vec<u8>, usize)>,
}

impl<S> JsonAnswers<S> {
    pub fn new(io: S) -> Self {
        Self { io, answer: None }
    }
}

/// The status of hyper's own answer to a request it could not read: its status line, then
/// `connection: close` and an empty body, as hyper writes it and no handler here does (every
/// handler's 4xx has a JSON body and starts its headers with the content type).
fn hyper_answer(bytes: &[u8]) -> Option<StatusCode> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok().filter(StatusCode::is_client_error)?;
    let line_end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    rest[line_end + 2..].starts_with(b"connection: close\r\ncontent-length: 0\r\n").then_some(status)
}

/// The answer for `status` in the API's shape.
fn json_answer(status: StatusCode) -> Vec<u8> {
    // The limits named from where they are set, so that a message cannot drift from them.
    let (code, message) = match status {
        StatusCode::URI_TOO_LONG => {
            ("uri_too_long", "the URL is over 65,534 bytes: send a long query as JSON to POST /api/search".to_string())
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            format!(
                "the request has more than 100 headers, or over {} kB of them",
                super::serving::MAX_HEAD_BYTES / 1024
            ),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "slow_head",
            format!(
                "the request line and headers did not arrive in time (--idle-timeout, at most {} s)",
                super::connections::HEAD_WITHIN.as_secs()
            ),
        ),
        _ => (
            "bad_request",
            "the request is not HTTP/1.1 that can be read: check its request line and headers".to_string(),
        ),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\n\
         content-length: {}\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or_default(),
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncWrite + Unpin> JsonAnswers<S> {
    /// Writes out what is left of the JSON answer, if there is one.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((answer, written)) = &mut self.answer {
            while *written < answer.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &answer[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonAnswers<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonAnswers<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.answer.is_none() {
            if let Some(status) = hyper_answer(buf) {
                this.answer = Some((json_answer(status), 0));
                // hyper's bytes count as written: the JSON goes out in their place, now or at
                // the flush that follows.
                if let Poll::Ready(Err(e)) = this.poll_answer(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        ready!(this.poll_answer(cx))?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's answer is one buffer (no body); anything else goes through as it is.
        match bufs.iter().find(|buf| !buf.is_empty()) {
            Some(first) if self.answer.is_none() && hyper_answer(first).is_some() => self.poll_write(cx, first),
            _ => {
                let this = self.get_mut();
                ready!(this.poll_answer(cx))?;
                Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_answer(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_empty_answers_are_taken_for_its_own() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\
                      date: Mon, 07 Dec 2026 07:39:58 GMT\r\n\r\n";
        assert_eq!(hyper_answer(hyper), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n";
        assert_eq!(hyper_answer(ours), None);
        let not_an_error = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_answer(not_an_error), None);
        let answer = String::from_utf8(json_answer(StatusCode::URI_TOO_LONG)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.ends_with(&format!("content-length: {}", body.len())), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "uri_too_long");
    }
}
