//! Sign-in and API tokens over real HTTP against the real binary: every route but the health
//! check needs credentials once the library has any; tokens can be read-only, revoked and
//! expired; sessions end on sign-out; failed sign-ins are slowed down; a network address without
//! users refuses to start; and no secret reaches the log or `stats`.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::http::{get, request_with_headers, HttpResponse};
use crate::common::server::{add_user, indexed_fixtures, serve_logging_to, RunningServer};

fn imgsearch(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    cmd.args(common::library_args(data));
    cmd
}

/// `token create` prints the token alone on its last line.
fn create_token(data: &Path, extra: &[&str]) -> String {
    let out = imgsearch(data).args(["token", "create"]).args(extra).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string()
}

fn with_token(addr: &str, method: &str, path: &str, token: &str) -> HttpResponse {
    request_with_headers(addr, method, path, &[("Authorization", &format!("Bearer {token}"))], b"")
}

fn library() -> (tempfile::TempDir, std::path::PathBuf) {
    indexed_fixtures(&["coffee.png", "rocket.jpg"])
}

fn login(addr: &str, user: &str, password: &str) -> HttpResponse {
    let body = serde_json::json!({"user": user, "password": password}).to_string();
    let origin = format!("http://{addr}");
    request_with_headers(
        addr,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json"), ("Origin", &origin)],
        body.as_bytes(),
    )
}

/// The `name=value` of a response's session cookie.
fn session_cookie(response: &HttpResponse) -> String {
    let set = response.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    set.split(';').next().unwrap().to_string()
}

const ROUTES: [(&str, &str); 12] = [
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/stats"),
    ("GET", "/api/search?q=cat"),
    ("POST", "/api/search"),
    ("POST", "/api/search/image"),
    ("POST", "/api/search/vector"),
    ("GET", "/api/images/1"),
    ("GET", "/api/images/1/thumbnail"),
    ("GET", "/api/images/1/file"),
    ("GET", "/api/images/1/similar"),
];

#[test]
fn every_route_needs_a_session_or_token_once_the_library_has_users() {
    let (tmp, data) = library();
    add_user(&data, "alice", "correct horse battery");
    let log = tmp.path().join("server.log");
    let server: RunningServer = serve_logging_to(&data, &[], &log);
    let addr = &server.addr;
    assert_eq!(get(addr, "/api/health").status, 200, "the health check stays open");
    assert_eq!(get(addr, "/login").status, 200, "the sign-in page is open");
    for (method, path) in ROUTES {
        let response = request_with_headers(addr, method, path, &[], b"");
        let expected = if path == "/" { 303 } else { 401 };
        assert_eq!(response.status, expected, "{method} {path} without credentials");
        if expected == 401 {
            assert_eq!(response.json()["error"]["code"], "unauthorized", "{method} {path}");
        }
    }
    assert_eq!(get(addr, "/").header("location").as_deref(), Some("/login"));

    // A wrong password, a wrong name, then the right one.
    assert_eq!(login(addr, "alice", "wrong password").status, 401);
    assert_eq!(login(addr, "mallory", "correct horse battery").status, 401);
    let signed_in = login(addr, "alice", "correct horse battery");
    assert_eq!(signed_in.status, 200);
    let cookie = session_cookie(&signed_in);
    let with_cookie = |method: &str, path: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        request_with_headers(addr, method, path, &headers, b"")
    };
    let hits = with_cookie("GET", "/api/search?q=a%20photo", &[]);
    assert_eq!(hits.status, 200);
    assert_eq!(hits.json()["hits"].as_array().unwrap().len(), 2);
    assert_eq!(hits.header("cache-control").as_deref(), Some("no-store"), "results must not stay in the browser");
    assert_eq!(with_cookie("GET", "/api/session", &[]).json()["user"], "alice");
    // A change from a signed-in browser must come from this server's own pages (no CSRF).
    let token_id = {
        create_token(&data, &["--name", "victim"]);
        let listed = imgsearch(&data).args(["token", "list", "--json"]).output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap()["tokens"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let delete = format!("/api/tokens/{token_id}");
    let forged = with_cookie("DELETE", &delete, &[("Origin", "http://evil.example")]);
    assert_eq!(forged.status, 403);
    assert_eq!(forged.json()["error"]["code"], "cross_origin");
    assert_eq!(with_cookie("DELETE", &delete, &[]).status, 403, "no Origin at all is not trusted either");
    let origin = format!("http://{addr}");
    assert_eq!(with_cookie("DELETE", &delete, &[("Origin", &origin)]).status, 204);

    // Signing out ends the session on the server: the old cookie no longer works.
    assert_eq!(with_cookie("POST", "/api/logout", &[("Origin", &origin)]).status, 204);
    assert_eq!(with_cookie("GET", "/api/search?q=cat", &[]).status, 401);
    drop(server);

    // Nothing secret in the log: not the password, not the hash, not the session.
    let log = std::fs::read_to_string(&log).unwrap();
    let hash = std::fs::read_to_string(data.join("auth.json")).unwrap();
    let hash: serde_json::Value = serde_json::from_str(&hash).unwrap();
    let hash = hash["users"]["alice"]["password_hash"].as_str().unwrap();
    let session = cookie.split('=').nth(1).unwrap();
    for secret in ["correct horse battery", hash, session] {
        assert!(!log.contains(secret), "the log shows a secret: {secret}");
    }
    assert!(log.contains("sign-in failed for \"alice\""), "failures are logged for the admin: {log}");
    let stats = imgsearch(&data).args(["stats", "--json"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&stats.stdout).contains(hash));
}

#[test]
fn tokens_can_be_read_only_revoked_and_expired() {
    let (_tmp, data) = library();
    let full = create_token(&data, &["--name", "backup"]);
    let read_only = create_token(&data, &["--read-only", "--name", "frame"]);
    let expired = create_token(&data, &["--expires", "0"]);
    assert!(full.starts_with("isk_") && full.len() > 40, "{full}");
    let server = common::server::serve(&data, &[]);
    let addr = &server.addr;
    assert_eq!(get(addr, "/api/stats").status, 401, "tokens alone turn sign-in on");
    for token in [&full, &read_only] {
        assert_eq!(with_token(addr, "GET", "/api/search?q=cat", token).status, 200);
        assert_eq!(with_token(addr, "GET", "/api/images/1/thumbnail", token).status, 200);
    }
    assert_eq!(with_token(addr, "GET", "/api/stats", &expired).status, 401, "an expired token");
    assert_eq!(with_token(addr, "GET", "/api/stats", "isk_not_a_token").status, 401);

    let listed = with_token(addr, "GET", "/api/tokens", &full).json();
    let id_of = |name: &str| {
        listed["tokens"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(!listed.to_string().contains(&full[4..]), "secrets are never listed");
    // A read-only token cannot change anything; a full one can.
    let frame = format!("/api/tokens/{}", id_of("frame"));
    let refused = with_token(addr, "DELETE", &frame, &read_only);
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"]["code"], "read_only_token");
    // Revoked on the command line while the server runs: refused from then on.
    let out = imgsearch(&data).args(["token", "revoke", &id_of("frame")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(with_token(addr, "GET", "/api/stats", &read_only).status, 401, "a revoked token");
    let backup = format!("/api/tokens/{}", id_of("backup"));
    assert_eq!(with_token(addr, "DELETE", &backup, &full).status, 204);
    assert_eq!(with_token(addr, "GET", "/api/stats", &full).status, 401, "it revoked itself");
}

#[test]
fn failed_sign_ins_are_slowed_down_per_user() {
    let (_tmp, data) = library();
    add_user(&data, "bob", "a long enough password");
    let server = common::server::serve(&data, &[]);
    let addr = &server.addr;
    for _ in 0..5 {
        assert_eq!(login(addr, "bob", "guess").status, 401);
    }
    // Even the right password waits now, and says how long.
    let slowed = login(addr, "bob", "a long enough password");
    assert_eq!(slowed.status, 429);
    assert_eq!(slowed.json()["error"]["code"], "too_many_attempts");
    let wait: u64 = slowed.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
}

#[test]
fn a_burst_of_concurrent_guesses_gets_no_more_tries_than_guesses_one_at_a_time() {
    let (_tmp, data) = library();
    add_user(&data, "bob", "a long enough password");
    let server = common::server::serve(&data, &[]);
    let addr = server.addr.as_str();
    let guesses: Vec<u16> = std::thread::scope(|scope| {
        let burst: Vec<_> = (0..24).map(|i| scope.spawn(move || login(addr, "bob", &format!("guess {i}")))).collect();
        burst.into_iter().map(|guess| guess.join().unwrap().status).collect()
    });
    let checked = guesses.iter().filter(|&&status| status == 401).count();
    assert_eq!(checked, 5, "only five guesses may be checked, whatever their timing: {guesses:?}");
    assert!(guesses.iter().all(|&status| status == 401 || status == 429), "{guesses:?}");
    // A name no user can have is refused before it is checked or logged.
    let long = login(addr, &"x".repeat(100_000), "guess");
    assert_eq!(long.status, 400);
    assert_eq!(long.json()["error"]["code"], "bad_user");
}

#[test]
fn a_network_address_without_users_refuses_to_start_and_says_what_to_do() {
    let (_tmp, data) = library();
    let out = imgsearch(&data).args(["serve", "--addr", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("imgsearch user add") && stderr.contains("--no-auth"), "{stderr}");

    // --no-auth starts anyway, and warns.
    let mut child = imgsearch(&data)
        .args(["serve", "--addr", "0.0.0.0:0", "--no-auth"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut banner).unwrap();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(banner.starts_with("imgsearch serving on http://0.0.0.0:"), "{banner}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--no-auth") && stderr.contains("sees every photo"), "{stderr}");
}

#[test]
fn user_names_and_passwords_are_checked_and_passwd_ends_sessions() {
    let (_tmp, data) = library();
    let run = |args: &[&str], stdin: &str| {
        let mut child = imgsearch(&data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let short = run(&["user", "add", "carol", "--password-stdin"], "short\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8"));
    let bad_name = run(&["user", "add", "car ol/..", "--password-stdin"], "long enough pw\n");
    assert!(!bad_name.status.success());
    assert!(run(&["user", "add", "carol", "--password-stdin"], "first password\n").status.success());
    let twice = run(&["user", "add", "carol", "--password-stdin"], "first password\n");
    assert!(!twice.status.success(), "adding an existing user is refused");
    let no_terminal = run(&["user", "passwd", "carol"], "");
    assert!(String::from_utf8_lossy(&no_terminal.stderr).contains("--password-stdin"));

    let server = common::server::serve(&data, &[]);
    let cookie = session_cookie(&login(&server.addr, "carol", "first password"));
    let search = || request_with_headers(&server.addr, "GET", "/api/stats", &[("Cookie", cookie.as_str())], b"");
    assert_eq!(search().status, 200);
    assert!(run(&["user", "passwd", "carol", "--password-stdin"], "second password\n").status.success());
    assert_eq!(search().status, 401, "a new password ends the old sessions");
    let cookie = session_cookie(&login(&server.addr, "carol", "second password"));
    let search = || request_with_headers(&server.addr, "GET", "/api/stats", &[("Cookie", cookie.as_str())], b"");
    assert_eq!(search().status, 200);
    assert!(run(&["user", "remove", "carol"], "").status.success());
    assert_eq!(search().status, 401, "a removed user's sessions end");
    let listed = run(&["user", "list", "--json"], "");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap()["users"], serde_json::json!([]));
}

/// Behind a reverse proxy (`--trust-proxy`), sign-ins are slowed per forwarded client and
/// cookies are `Secure` when the proxy says HTTPS; without it, those headers are ignored.
#[test]
fn forwarded_headers_count_only_with_trust_proxy() {
    let (_tmp, data) = library();
    add_user(&data, "frank", "frank's long password");
    let attempt = |addr: &str, user: &str, password: &str, forwarded_for: &str| {
        let body = serde_json::json!({"user": user, "password": password}).to_string();
        let headers =
            [("Content-Type", "application/json"), ("X-Forwarded-For", forwarded_for), ("X-Forwarded-Proto", "https")];
        request_with_headers(addr, "POST", "/api/login", &headers, body.as_bytes())
    };
    for (trust, other_client_after_lockout) in [(true, 401), (false, 429)] {
        let extra: &[&str] = if trust { &["--trust-proxy"] } else { &[] };
        let server = common::server::serve(&data, extra);
        // Five failures from one (forwarded) client, each for a different name.
        for i in 0..5 {
            assert_eq!(attempt(&server.addr, &format!("nobody{i}"), "x", "203.0.113.7").status, 401);
        }
        assert_eq!(attempt(&server.addr, "someone", "x", "203.0.113.7").status, 429, "that client waits");
        // Another forwarded client is another client only when the proxy is trusted.
        let other = attempt(&server.addr, "someone-else", "x", "198.51.100.4").status;
        assert_eq!(other, other_client_after_lockout, "trust_proxy={trust}");
        let signed_in = attempt(&server.addr, "frank", "frank's long password", "198.51.100.9");
        if trust {
            assert!(signed_in.header("set-cookie").unwrap().contains("; Secure"));
        } else {
            assert_eq!(signed_in.status, 429, "the socket's address is locked out");
        }
    }
}

/// A server of a library whose only credential is a token (the token, its log's path); its
/// folder goes with the first.
fn serving_a_token() -> (tempfile::TempDir, std::path::PathBuf, RunningServer, String, std::path::PathBuf) {
    let (tmp, data) = library();
    let token = create_token(&data, &[]);
    let log = tmp.path().join("server.log");
    let server = serve_logging_to(&data, &[], &log);
    (tmp, data, server, token, log)
}

/// A damaged `auth.json` (a bad edit, a full disk) keeps the last users and tokens read, says so
/// once, not on every request, and is read again once it changes.
#[test]
fn a_damaged_auth_file_keeps_the_last_credentials_and_is_logged_once() {
    if common::on_postgres() {
        return; // the data folder's own file
    }
    let (_tmp, data, server, token, log) = serving_a_token();
    assert_eq!(with_token(&server.addr, "GET", "/api/stats", &token).status, 200);
    let file = data.join("auth.json");
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"{\"users\": ").unwrap();
    for _ in 0..5 {
        assert_eq!(with_token(&server.addr, "GET", "/api/stats", &token).status, 200);
        assert_eq!(with_token(&server.addr, "GET", "/api/stats", "not-a-token").status, 401);
    }
    let said = std::fs::read_to_string(&log).unwrap().matches("cannot read users and tokens").count();
    assert_eq!(said, 1, "{}", std::fs::read_to_string(&log).unwrap());
    // Mended (here: without its token), it is read again.
    let mut mended: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let tokens = &mut mended["tokens"];
    *tokens = if tokens.is_array() { serde_json::json!([]) } else { serde_json::json!({}) };
    std::fs::write(&file, serde_json::to_vec(&mended).unwrap()).unwrap();
    assert_eq!(with_token(&server.addr, "GET", "/api/stats", &token).status, 401);
}

/// Users and tokens that take long to read (a database that stopped answering; here a pipe in
/// place of `auth.json`) hold up the one request that reads them, not the server: the others
/// are answered from the last copy read meanwhile.
#[test]
fn credentials_that_take_long_to_read_hold_up_one_request_not_the_server() {
    if common::on_postgres() {
        return; // the data folder's own file
    }
    let (_tmp, data, server, token, _) = serving_a_token();
    let ask = || {
        let (addr, token, (sent, answer)) = (server.addr.clone(), token.clone(), std::sync::mpsc::channel());
        std::thread::spawn(move || sent.send(with_token(&addr, "GET", "/api/stats", &token).status));
        answer
    };
    assert_eq!(ask().recv(), Ok(200));
    let file = data.join("auth.json");
    let good = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(Command::new("mkfifo").arg(&file).status().unwrap().success());
    let reading = ask(); // changed: read again, from a pipe nobody writes yet
    std::thread::sleep(std::time::Duration::from_millis(500));
    for _ in 0..4 {
        let answer = ask().recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(answer, Ok(200), "answered from the last copy read while one request reads");
    }
    std::fs::write(&file, &good).unwrap(); // the writer comes
    assert_eq!(reading.recv_timeout(std::time::Duration::from_secs(10)), Ok(200));
}
