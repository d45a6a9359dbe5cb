//! Shared by the benchmarks.

use std::path::Path;

use imgsearch::store::Location;

/// A new, empty database on the PostgreSQL server of `admin` (a postgres:// URL, e.g. from
/// `scripts/postgres.sh start DIR`), as a library location with `cache` for its local files.
pub fn new_database(admin: &str, cache: &Path) -> Location {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("imgsearch_bench_{}_{next}", std::process::id());
    let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    Location::Postgres { url, read_url: None, cache: cache.to_owned(), schema: None }
}
