//! `serve --tls-cert --tls-key`: HTTPS with rustls, checked by a real TLS client (rustls, trusting
//! only a self-signed certificate made for the test): the API answers over TLS, the session
//! cookie is `Secure` there, plain HTTP on the same port gets no answer, and bad key files are
//! refused at start with a message naming the file.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use crate::common::server::{add_user, indexed_fixtures, serve};

struct Certificate {
    der: rustls::pki_types::CertificateDer<'static>,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn self_signed(dir: &Path) -> Certificate {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    Certificate { der: made.cert.der().clone(), cert, key }
}

/// One HTTPS request; returns the status line's code, the headers and the body.
fn https(addr: &str, trusted: &Certificate, request: &str) -> (u16, String, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(addr).unwrap());
    tls.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // The server may close without a TLS close_notify after `Connection: close`: keep what came.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete HTTP response over TLS");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[test]
fn the_api_answers_over_tls_with_secure_cookies_and_not_in_plain_http() {
    let (tmp, data) = indexed_fixtures(&["coffee.png", "rocket.jpg"]);
    add_user(&data, "erin", "erin's long password");
    let certificate = self_signed(tmp.path());
    let server = serve(
        &data,
        &["--tls-cert", certificate.cert.to_str().unwrap(), "--tls-key", certificate.key.to_str().unwrap()],
    );
    assert_eq!(server.scheme, "https");
    let addr = &server.addr;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (status, _, body) = https(addr, &certificate, &get("/api/health"));
    assert_eq!((status, body.contains("ok")), (200, true), "{body}");
    assert_eq!(https(addr, &certificate, &get("/api/stats")).0, 401, "sign-in still applies");

    let login = serde_json::json!({"user": "erin", "password": "erin's long password"}).to_string();
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://{addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{login}",
        login.len()
    );
    let (status, head, _) = https(addr, &certificate, &request);
    assert_eq!(status, 200, "{head}");
    let cookie = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // Plain HTTP on the TLS port: no HTTP answer comes back.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    plain.write_all(get("/api/health").as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "plain HTTP was answered");
}

#[test]
fn unreadable_or_mismatched_key_files_are_refused_at_start() {
    let (tmp, data) = indexed_fixtures(&["coffee.png"]);
    let certificate = self_signed(tmp.path());
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let other = self_signed(&other);
    let start = |cert: &Path, key: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .args(common::library_args(&data))
            .args(["serve", "--addr", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = start(&certificate.cert, &other.key);
    assert!(stderr.contains("key.pem") && stderr.contains("does not match"), "{stderr}");
    let stderr = start(&certificate.key, &certificate.key);
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
    let stderr = start(&tmp.path().join("missing.pem"), &certificate.key);
    assert!(stderr.contains("missing.pem"), "{stderr}");
}
