//! What only a PostgreSQL library does: several indexers writing one library at once, several
//! servers answering from it, its schema versions. (The shared suites — index, search, server,
//! export/import, the browser — run on PostgreSQL too: `scripts/test.sh` runs them a second
//! time with IMGSEARCH_TEST_BACKEND=postgres.) Needs the test server `scripts/test.sh` starts.

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::http::get;
use crate::common::{database_for, jpeg_with_gps, model_dir, noise_photos};
use serde_json::Value;

/// `imgsearch` on the library of database `url`, with `cache` as its local folder (one per
/// simulated host).
fn imgsearch(url: &str, cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    cmd.arg("--data-dir").arg(cache).args(["--store", url, "--device", "cpu"]).env("HF_HUB_OFFLINE", "1");
    cmd
}

fn json_of(out: Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn spawn_index(url: &str, cache: &Path, roots: &[&Path]) -> std::process::Child {
    imgsearch(url, cache)
        .arg("index")
        .args(roots)
        .arg("--model")
        .arg(model_dir("tiny-clip-b32-quickgelu"))
        .args(["--quiet", "--batch-size", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `index` of `roots` with the test model, through `library` (an `imgsearch` on some library).
fn index(mut library: Command, roots: &[&Path]) {
    let out = library
        .arg("index")
        .args(roots)
        .arg("--model")
        .arg(model_dir("tiny-clip-b32-quickgelu"))
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `index` of `root` from `host`, killed (SIGKILL) once the library holds `rows` pictures;
/// returns how many it holds then.
fn index_killed_mid_run(url: &str, host: &Path, root: &Path, rows: usize) -> usize {
    let mut killed = spawn_index(url, host, &[root]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while listed_so_far(url, host) < rows && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    // A transaction the indexer had sent its COMMIT for still commits after the kill: count
    // once its connections' server processes are gone, not while one may still be committing.
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    while client.query_one(others, &[]).unwrap().get::<_, i64>(0) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    listed_paths(url, host).len()
}

fn has_vector_index(url: &str) -> bool {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.query_one("SELECT to_regclass('images_embedding') IS NOT NULL", &[]).unwrap().get(0)
}

/// How many pictures `list` shows while an index run starts: none before it has made the library
/// (`list` then says there is none).
fn listed_so_far(url: &str, cache: &Path) -> usize {
    let out = imgsearch(url, cache).args(["list", "--json"]).output().unwrap();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("there is no library") {
        return 0;
    }
    json_of(out).as_array().unwrap().len()
}

fn listed_paths(url: &str, cache: &Path) -> Vec<String> {
    let list = json_of(imgsearch(url, cache).args(["list", "--json"]).output().unwrap());
    list.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect()
}

/// 120 distinct photos, half in `a`, half in `b`.
fn two_roots(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    std::fs::create_dir_all(&b).unwrap();
    for (i, photo) in noise_photos(&a, 120).into_iter().enumerate() {
        if i % 2 == 1 {
            std::fs::rename(&photo, b.join(photo.file_name().unwrap())).unwrap();
        }
    }
    (a, b)
}

#[test]
fn indexers_on_two_hosts_at_once_then_a_kill_9_and_a_rerun_store_every_picture_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_roots(tmp.path());
    let url = database_for(&tmp.path().join("library"));
    let (host1, host2, host3) = (tmp.path().join("host1"), tmp.path().join("host2"), tmp.path().join("host3"));
    // Host 1 indexes both roots, host 2 the same both, host 3 only b: every file is written by
    // two or three processes at once.
    let mut first = spawn_index(&url, &host1, &[&a, &b]);
    let mut second = spawn_index(&url, &host2, &[&b, &a]);
    let third = spawn_index(&url, &host3, &[&b]);
    for child in [&mut first, &mut second] {
        let out = child.wait_with_output_ref();
        assert!(out.0.success(), "an indexer failed: {}", out.1);
    }
    let out = third.wait_with_output().unwrap();
    assert!(out.status.success(), "an indexer failed: {}", String::from_utf8_lossy(&out.stderr));
    let paths = listed_paths(&url, &host1);
    assert_eq!(paths.len(), 120, "every picture once");
    assert!(has_vector_index(&url), "the first runs into the empty library built the vector index at their end");
    assert_eq!(paths.iter().collect::<HashSet<_>>().len(), 120, "no path twice");

    // New pictures, an indexer killed mid-run, and a re-run on another host.
    let more = noise_photos(&tmp.path().join("c"), 200);
    let partial = index_killed_mid_run(&url, &host1, &tmp.path().join("c"), 140);
    assert!(partial > 120 && partial < 320, "killed mid-run: {partial} pictures");
    let out = imgsearch(&url, &host2)
        .arg("index")
        .arg(tmp.path().join("c"))
        .arg("--model")
        .arg(model_dir("tiny-clip-b32-quickgelu"))
        .args(["--json"])
        .output()
        .unwrap();
    let summary = json_of(out);
    assert_eq!(summary["indexed"].as_u64().unwrap() as usize + partial - 120, 200, "{summary:#}");
    let paths = listed_paths(&url, &host3);
    assert_eq!(paths.iter().collect::<HashSet<_>>().len(), 120 + more.len());
    let stats = json_of(imgsearch(&url, &host3).args(["stats", "--json"]).output().unwrap());
    assert_eq!(stats["images"], 320, "{stats:#}");
}

/// Two hosts that start indexing the same new model at once share its new space: neither fails
/// on the other's schema (three libraries, since the race is one of timing).
#[test]
fn two_hosts_starting_a_new_model_at_once_both_index_into_its_space() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    noise_photos(&photos, 4);
    for library in ["one", "two", "three"] {
        let url = database_for(&tmp.path().join(library));
        index(imgsearch(&url, &tmp.path().join("host0")), &[&photos]);
        let indexers: Vec<_> = ["host1", "host2"]
            .iter()
            .map(|host| {
                imgsearch(&url, &tmp.path().join(host))
                    .arg("index")
                    .arg(&photos)
                    .arg("--model")
                    .arg(model_dir("tiny-siglip-sp"))
                    .arg("--quiet")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for indexer in indexers {
            let out = indexer.wait_with_output().unwrap();
            assert!(out.status.success(), "{library}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let stats = json_of(imgsearch(&url, &tmp.path().join("host0")).args(["stats", "--json"]).output().unwrap());
        assert_eq!(stats["images"], 4, "{stats:#}");
        assert!(stats["model"]["model"].as_str().is_some_and(|m| m.ends_with("tiny-siglip-sp")), "{stats:#}");
    }
}

/// A first `index` into an empty database stores the rows and builds the vector index once at
/// its end; a run killed before its end leaves that to the next run.
#[test]
fn a_first_index_builds_the_vector_index_at_its_end_even_after_a_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    noise_photos(&photos, 150);
    let url = database_for(&tmp.path().join("library"));
    let host = tmp.path().join("host");
    let partial = index_killed_mid_run(&url, &host, &photos, 10);
    assert!((10..150).contains(&partial), "killed mid-run: {partial} pictures");
    assert!(!has_vector_index(&url), "no index is kept up to date while a first run loads");
    index(imgsearch(&url, &host), &[&photos]);
    assert!(has_vector_index(&url), "the next run built it");
    assert_eq!(listed_paths(&url, &host).len(), 150);
    let hits = json_of(imgsearch(&url, &host).args(["search", "--json", "-k", "3", "noise"]).output().unwrap());
    assert_eq!(hits.as_array().unwrap().len(), 3);
}

trait WaitRef {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String);
}

impl WaitRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String) {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
        }
        (self.wait().unwrap(), stderr)
    }
}

#[test]
fn two_servers_on_one_database_see_what_another_host_indexed_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_roots(tmp.path());
    let url = database_for(&tmp.path().join("library"));
    let host1 = tmp.path().join("host1");
    index(imgsearch(&url, &host1), &[&a]);
    let servers: Vec<_> = ["server1", "server2"]
        .iter()
        .map(|host| common::server::serve_store(&url, &tmp.path().join(host), &[]))
        .collect();
    for server in &servers {
        assert_eq!(get(&server.addr, "/api/stats").json()["images"], 60);
    }
    // A third host indexes b while both servers run.
    index(imgsearch(&url, &tmp.path().join("host3")), &[&b]);
    for server in &servers {
        assert_eq!(get(&server.addr, "/api/stats").json()["images"], 120);
        let hits = get(&server.addr, "/api/search?q=noise%20name:photo_0101").json();
        let paths: Vec<&str> = hits["hits"].as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap()).collect();
        assert_eq!(paths.len(), 1, "{hits:#}");
        assert!(paths[0].ends_with("b/photo_0101.png"), "{paths:?}");
        let id = hits["hits"][0]["id"].as_u64().unwrap();
        let thumbnail = get(&server.addr, &format!("/api/images/{id}/thumbnail"));
        assert_eq!(thumbnail.status, 200, "each server serves the files through its own cache");
    }
    // Runs' summaries (`serve --watch` records one per root every few seconds) do not pile up:
    // the latest 1,000 are kept, the latest one is the last run.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client.batch_execute("INSERT INTO runs (summary) SELECT '{}'::jsonb FROM generate_series(1, 1500)").unwrap();
    index(imgsearch(&url, &host1), &[&a]);
    let runs: i64 = client.query_one("SELECT count(*) FROM runs", &[]).unwrap().get(0);
    assert_eq!(runs, 1_000);
    let last = json_of(imgsearch(&url, &host1).args(["stats", "--json"]).output().unwrap());
    assert_eq!(last["last_run"]["unchanged"], 60, "{last:#}");
}

/// Two hosts mount one share at different places and index it as `photos`: the second finds
/// every picture already there, and each host's server serves the files through its own mount.
#[test]
fn hosts_that_mount_a_named_root_elsewhere_share_its_pictures() {
    let tmp = tempfile::tempdir().unwrap();
    let (mount1, mount2) = (tmp.path().join("host1/mnt/photos"), tmp.path().join("host2/Volumes/photos"));
    std::fs::create_dir_all(&mount2).unwrap();
    for photo in noise_photos(&mount1, 10) {
        let copy = mount2.join(photo.file_name().unwrap());
        std::fs::copy(&photo, &copy).unwrap();
        let mtime = std::fs::metadata(&photo).unwrap().modified().unwrap();
        std::fs::File::options().write(true).open(&copy).unwrap().set_modified(mtime).unwrap();
    }
    let url = database_for(&tmp.path().join("library"));
    let (cache1, cache2) = (tmp.path().join("host1/cache"), tmp.path().join("host2/cache"));
    let run = |cache: &Path, mount: &Path| {
        json_of(
            imgsearch(&url, cache)
                .arg("index")
                .arg(format!("photos={}", mount.display()))
                .arg("--model")
                .arg(model_dir("tiny-clip-b32-quickgelu"))
                .arg("--json")
                .output()
                .unwrap(),
        )
    };
    assert_eq!(run(&cache1, &mount1)["indexed"], 10);
    let second = run(&cache2, &mount2);
    assert_eq!((&second["unchanged"], &second["indexed"]), (&Value::from(10), &Value::from(0)), "{second}");
    assert_eq!(listed_paths(&url, &cache1).len(), 10);

    // The library now records host2's mount; host1 still serves through its own.
    std::fs::remove_dir_all(&mount2).unwrap();
    let host1 = common::server::serve_store(&url, &cache1, &[]);
    let host2 = common::server::serve_store(&url, &cache2, &[]);
    let hit = get(&host1.addr, "/api/search?q=name:photo_0003&k=1").json()["hits"][0].clone();
    assert_eq!(hit["path"], "photos:/photo_0003.png");
    let file = format!("/api/images/{}/file", hit["id"]);
    let served = get(&host1.addr, &file);
    assert_eq!(served.status, 200);
    assert_eq!(served.body, std::fs::read(mount1.join("photo_0003.png")).unwrap());
    assert_eq!(get(&host2.addr, &file).status, 410, "host2's mount is gone");
}

#[test]
fn a_server_searches_a_streaming_replica_while_indexers_write_the_primary() {
    let replica = std::env::var("IMGSEARCH_TEST_POSTGRES_REPLICA")
        .expect("run the tests with scripts/test.sh: it starts PostgreSQL and a streaming replica");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_roots(tmp.path());
    let url = database_for(&tmp.path().join("library"));
    let database = url.rsplit_once('/').unwrap().1;
    let read_url = format!("{}/{database}", replica.rsplit_once('/').unwrap().0);
    index(imgsearch(&url, &tmp.path().join("indexer")), &[&a]);
    let server = common::server::serve_store(&url, &tmp.path().join("server"), &["--read-store", &read_url]);
    let images = || get(&server.addr, "/api/stats").json()["images"].as_u64().unwrap();
    let caught_up = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while images() != n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        images() == n
    };
    assert!(caught_up(60), "the replica never showed the first 60 pictures");
    index(imgsearch(&url, &tmp.path().join("indexer")), &[&b]);
    assert!(caught_up(120), "the replica never showed the next 60");
    let hits = get(&server.addr, "/api/search?q=noise%20name:photo_0101").json();
    assert_eq!(hits["hits"].as_array().unwrap().len(), 1, "{hits:#}");
    // The searches ran on the replica: the server holds connections to its copy of the database.
    let mut client = postgres::Client::connect(&read_url, postgres::NoTls).unwrap();
    let readers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'imgsearch'",
            &[&database],
        )
        .unwrap()
        .get(0);
    assert!(readers > 0, "no imgsearch connection on the replica");

    // A --read-store that is not a copy of the library is refused: another library, and a
    // database that holds none.
    let other = database_for(&tmp.path().join("another library"));
    index(imgsearch(&other, &tmp.path().join("indexer")), &[&a]);
    let empty = database_for(&tmp.path().join("no library"));
    for (read_store, said) in [(&other, "holds another library"), (&empty, "holds no imgsearch library")] {
        let out = imgsearch(&url, &tmp.path().join("server"))
            .args(["--read-store", read_store, "search", "noise"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(said), "{read_store}: {stderr}");
    }
}

/// Search results as (path, score) pairs (no score for a query of filters only).
fn search(args: &[std::ffi::OsString], query: &str) -> Vec<(String, Option<f64>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(args)
        .args(["--device", "cpu", "search", query, "-k", "50", "--json"])
        .output()
        .unwrap();
    let hits = json_of(out);
    hits.as_array().unwrap().iter().map(|h| (h["path"].as_str().unwrap().into(), h["score"].as_f64())).collect()
}

/// `import` into an empty PostgreSQL library loads the rows first and builds the vector index
/// once at the end (a bulk load); into a library that has pictures, the index stays.
#[test]
fn an_import_into_an_empty_database_builds_the_vector_index_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    noise_photos(&photos, 12);
    let folder = tmp.path().join("folder");
    index(
        {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
            cmd.arg("--data-dir").arg(&folder).args(["--device", "cpu"]);
            cmd
        },
        &[&photos],
    );
    let parquet = tmp.path().join("library.parquet");
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .arg("--data-dir")
        .arg(&folder)
        .arg("export")
        .arg(&parquet)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = database_for(&tmp.path().join("library"));
    let cache = tmp.path().join("cache");
    let has_index = || has_vector_index(&url);
    let imported = json_of(imgsearch(&url, &cache).arg("import").arg(&parquet).arg("--json").output().unwrap());
    assert_eq!(imported["imported"], 12, "{imported}");
    assert!(has_index(), "the index is built once the rows are in");
    let hits = json_of(imgsearch(&url, &cache).args(["search", "--json", "-k", "3", "noise"]).output().unwrap());
    assert_eq!(hits.as_array().unwrap().len(), 3);
    let again = json_of(imgsearch(&url, &cache).arg("import").arg(&parquet).arg("--json").output().unwrap());
    assert_eq!(again["unchanged"], 12, "{again}");
    assert!(has_index());

    // An index an older imgsearch built (pgvector's default breadth) is rebuilt by `repair`.
    let index_options = || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .query_one("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'images_embedding'", &[])
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(index_options(), "m=16,ef_construction=200");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let definition: String =
        client.query_one("SELECT pg_get_indexdef('images_embedding'::regclass)", &[]).unwrap().get(0);
    let older = definition.replace("ef_construction='200'", "ef_construction='64'");
    assert_ne!(older, definition);
    client.batch_execute(&format!("DROP INDEX images_embedding; {older}")).unwrap();
    let out = imgsearch(&url, &cache).arg("repair").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("older imgsearch"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(index_options(), "m=16,ef_construction=200");
    let again = json_of(imgsearch(&url, &cache).args(["search", "--json", "-k", "3", "noise"]).output().unwrap());
    assert_eq!(again, hits, "the same hits from the rebuilt index");
}

/// pgvector builds the graph in `maintenance_work_mem`. An operator's setting (here 1 MB, in the
/// URL's options) stands, and a build that outgrows it says so and what to do: PostgreSQL's
/// notice, which the client would only have logged. Searches of that library then page past
/// the graph search's 1,000 candidates.
#[test]
fn a_vector_index_build_that_outgrows_an_operators_memory_setting_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<(String, Vec<f32>)> = common::clip_like::generate(2_000, 0, 48, 7)
        .pictures
        .into_iter()
        .enumerate()
        .map(|(i, embedding)| (format!("/archive/{i}.jpg"), embedding))
        .collect();
    let file = tmp.path().join("rows.parquet");
    common::parquet::write_foreign(&file, &rows);
    let url = database_for(&tmp.path().join("library"));
    let small = format!("{url}?options=-c%20maintenance_work_mem%3D1MB");
    let out = imgsearch(&small, &tmp.path().join("cache"))
        .arg("import")
        .arg(&file)
        .arg("--model")
        .arg(model_dir("tiny-clip-b32-quickgelu"))
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("maintenance_work_mem is too small") && stderr.contains("ALTER ROLE"), "{stderr}");
    assert!(has_vector_index(&url));

    // Pages past the graph search's 1,000 candidates are served too (by exact scores).
    let query = tmp.path().join("query.json");
    std::fs::write(&query, serde_json::to_vec(&rows[0].1).unwrap()).unwrap();
    let page = |k: &str, offset: &str| {
        let out = imgsearch(&url, &tmp.path().join("cache"))
            .args(["search", "--json", "-k", k, "--offset", offset, "--vector"])
            .arg(&query)
            .output()
            .unwrap();
        json_of(out).as_array().unwrap().len()
    };
    assert_eq!(page("50", "1500"), 50);
    assert_eq!(page("600", "500"), 600);
    assert_eq!(page("100", "1950"), 50, "the last 50 of 2,000");
}

#[test]
fn migrate_copies_a_data_folder_into_postgres_and_back_with_the_same_results() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = two_roots(tmp.path());
    let folder = tmp.path().join("folder");
    let folder_args = vec!["--data-dir".into(), folder.clone().into_os_string()];
    let mut on_folder = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    on_folder.args(&folder_args);
    index(on_folder, &[&a, common::image_path("rocket.jpg").parent().unwrap()]);
    let url = database_for(&tmp.path().join("library"));
    let migrate = |from: &[std::ffi::OsString], to: &str| {
        json_of(
            Command::new(env!("CARGO_BIN_EXE_imgsearch"))
                .args(from)
                .args(["migrate", "--to", to, "--json"])
                .output()
                .unwrap(),
        )
    };
    let summary = migrate(&folder_args, &url);
    assert!(summary["copied"].as_u64().unwrap() > 60, "{summary:#}");
    assert_eq!(summary["unchanged"], 0);
    let pg_args =
        vec!["--data-dir".into(), tmp.path().join("cache").into_os_string(), "--store".into(), url.clone().into()];
    let back = tmp.path().join("back");
    let summary = migrate(&pg_args, back.to_str().unwrap());
    assert_eq!(summary["unchanged"], 0, "{summary:#}");
    let back_args = vec!["--data-dir".into(), back.into_os_string()];
    for query in ["a rocket", "noise path:a", "a photo -noise", "type:png"] {
        let expected = search(&folder_args, query);
        assert!(!expected.is_empty(), "{query}");
        assert_eq!(search(&pg_args, query), expected, "{query} on PostgreSQL");
        assert_eq!(search(&back_args, query), expected, "{query} copied back");
    }
    let stats = json_of(
        Command::new(env!("CARGO_BIN_EXE_imgsearch")).args(&pg_args).args(["stats", "--json"]).output().unwrap(),
    );
    assert_eq!(stats["skipped"].as_u64(), Some(0), "{stats:#}");
    assert!(stats["last_run"]["indexed"].as_u64().is_some(), "the last run came along: {stats:#}");
    let again = migrate(&folder_args, &url);
    assert_eq!((again["copied"].as_u64(), again["unchanged"].as_u64()), (Some(0), summary["copied"].as_u64()));
}

/// Users and tokens live in the database: made on one host, honoured by every server, and a
/// token revoked anywhere is refused everywhere within seconds.
#[test]
fn users_and_tokens_live_in_the_database_and_every_server_honours_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = two_roots(tmp.path());
    let url = database_for(&tmp.path().join("library"));
    index(imgsearch(&url, &tmp.path().join("host1")), &[&a]);
    let out = imgsearch(&url, &tmp.path().join("host1")).args(["token", "create", "--read-only"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string();
    let servers: Vec<_> = ["server1", "server2"]
        .iter()
        .map(|host| common::server::serve_store(&url, &tmp.path().join(host), &[]))
        .collect();
    let bearer = format!("Bearer {token}");
    let stats = |addr: &str| {
        common::http::request_with_headers(addr, "GET", "/api/stats", &[("Authorization", &bearer)], b"").status
    };
    for server in &servers {
        assert_eq!(get(&server.addr, "/api/stats").status, 401);
        assert_eq!(stats(&server.addr), 200);
    }
    let listed =
        json_of(imgsearch(&url, &tmp.path().join("host3")).args(["token", "list", "--json"]).output().unwrap());
    let id = listed["tokens"][0]["id"].as_str().unwrap().to_string();
    let out = imgsearch(&url, &tmp.path().join("host3")).args(["token", "revoke", &id]).output().unwrap();
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while servers.iter().any(|s| stats(&s.addr) != 401) {
        assert!(Instant::now() < deadline, "a revoked token still works after 10 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn schema_versions_are_recorded_and_a_newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let url = database_for(&tmp.path().join("library"));
    // A command that writes makes the library (one that reads says there is none).
    assert!(imgsearch(&url, tmp.path()).args(["user", "list"]).status().unwrap().success());
    let stats = json_of(imgsearch(&url, tmp.path()).args(["stats", "--json"]).output().unwrap());
    assert_eq!(stats["images"], 0);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: Vec<i32> = client
        .query("SELECT version FROM imgsearch_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7]);
    client.execute("INSERT INTO imgsearch_schema (version) VALUES (99)", &[]).unwrap();
    let out = imgsearch(&url, tmp.path()).arg("stats").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("version 99") && stderr.contains("upgrade imgsearch"), "{stderr}");
}

/// Version 4 gives a library of version 3 the place of each picture from its records: a
/// library indexed before it finds its photos with `near:` as soon as it is opened.
#[test]
fn the_places_migration_reads_the_places_of_pictures_indexed_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    jpeg_with_gps("rocket.jpg", (-33.8568, 151.2153), &photos.join("sydney.jpg"));
    jpeg_with_gps("astronaut.jpg", (48.8584, 2.2945), &photos.join("paris.jpg"));
    let url = database_for(&tmp.path().join("library"));
    index(imgsearch(&url, tmp.path()), &[&photos]);
    // Back to version 3, as a library indexed by the imgsearch before this migration (and the
    // later ones, which are applied again after it).
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "ALTER TABLE images DROP COLUMN latitude, DROP COLUMN longitude, DROP COLUMN caption_words, \
             DROP COLUMN keyword_words, DROP COLUMN rating; \
             DELETE FROM imgsearch_schema WHERE version >= 4",
        )
        .unwrap();
    let hits =
        json_of(imgsearch(&url, tmp.path()).args(["search", "near:-33.857,151.215,500m", "--json"]).output().unwrap());
    let found: Vec<&str> = hits.as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap()).collect();
    assert!(found.len() == 1 && found[0].ends_with("sydney.jpg"), "{hits}");
    let placed: i64 = client.query_one("SELECT count(*) FROM images WHERE latitude IS NOT NULL", &[]).unwrap().get(0);
    assert_eq!(placed, 2);
}

/// Version 7 composes (NFC) the words filters match: a file a Mac named with a decomposed "é",
/// indexed before it (its words split at the accent), is found by `name:café` once opened.
#[test]
fn the_composed_words_migration_derives_the_words_of_pictures_indexed_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(photos.join("E\u{301}te\u{301}")).unwrap();
    std::fs::copy(common::image_path("coffee.png"), photos.join("E\u{301}te\u{301}/Cafe\u{301}.png")).unwrap();
    std::fs::copy(common::image_path("rocket.jpg"), photos.join("plain.jpg")).unwrap();
    let url = database_for(&tmp.path().join("library"));
    index(imgsearch(&url, tmp.path()), &[&photos]);
    // Back to version 6: the words and folders as it derived them, split at the accents.
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let old_folder = photos.join("E\u{301}te\u{301}").to_str().unwrap().to_owned();
    let changed = client
        .execute(
            "UPDATE images SET name_words = '{cafe,png}', path_words = path_words || '{e,te}', \
             folders = array_replace(folders, $1, $2) WHERE name_words @> '{café}'",
            &[&photos.join("Été").to_str().unwrap(), &old_folder],
        )
        .unwrap();
    assert_eq!(changed, 1);
    client.batch_execute("DELETE FROM imgsearch_schema WHERE version >= 7").unwrap();
    let names = |query: &str| {
        let hits = json_of(imgsearch(&url, tmp.path()).args(["search", query, "--json"]).output().unwrap());
        hits.as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("name:café"), ["Cafe\u{301}.png"]);
    assert_eq!(names(&format!("folder:{}", photos.join("Été").display())), ["Cafe\u{301}.png"]);
    let words: Vec<String> =
        client.query_one("SELECT name_words FROM images WHERE name_words @> '{café}'", &[]).unwrap().get(0);
    assert_eq!(words, ["café", "png"]);
}

#[test]
fn a_bad_store_url_or_an_unreachable_server_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = imgsearch("mysql://me@host/db", tmp.path()).arg("stats").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("postgres://USER@HOST:PORT/DATABASE"), "{stderr}");
    let free_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = imgsearch(&format!("postgres://me:hunter2@127.0.0.1:{free_port}/db"), tmp.path())
        .arg("stats")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is the server running"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password is never shown: {stderr}");
    // Not even the end of one that holds an unescaped `@`.
    let out = imgsearch(&format!("postgres://me:hunter@2x@127.0.0.1:{free_port}/db"), tmp.path())
        .arg("stats")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("2x"), "the password is never shown: {stderr}");
    assert!(stderr.contains("%40"), "{stderr}");
    // A port that takes connections and never answers (a frozen host) is given up on in time.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let out = common::output_within(
        imgsearch(&format!("postgres://me@127.0.0.1:{silent_port}/db?connect_timeout=2"), tmp.path()).arg("stats"),
        Duration::from_secs(30),
        "`stats` against a server that never answers",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("did not answer in 2 s"), "{stderr}");
    // What the server said is shown, not "db error".
    let admin = common::postgres_admin_url().unwrap();
    let (server, _) = admin.rsplit_once('/').unwrap();
    let out = imgsearch(&format!("{server}/no_such_library"), tmp.path()).arg("stats").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database \"no_such_library\" does not exist"), "{stderr}");
}
