//! `imgsearch serve`: the REST API and the web UI (axum + tokio). The model and the index are
//! loaded once; model work runs on blocking threads so the async runtime keeps answering.

mod auth;
mod connections;
mod error;
mod health;
pub mod local;
mod routes;
mod serving;
mod thumbnails;
mod tls;
mod unreadable;
mod work;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::ingest::pipeline::{self, DataAccess, IndexOptions};
use crate::ingest::walk;
use crate::model::ModelSpec;
use crate::search::SearchEngine;
use crate::store::catalog::IndexedRoot;
use crate::store::roots::{Mounts, Root};
use crate::store::{ImageRecord, Library};

pub use connections::DEFAULT_IDLE as DEFAULT_IDLE_TIMEOUT;
pub use error::ApiError;
pub use thumbnails::prune_renditions;
pub use tls::Peer;
pub use work::default_workers;

/// A picture's file, opened only while it is still the file that was indexed (same size,
/// modification time and content, checked on the opened file): whatever replaced it since,
/// another picture or a symlink to anything else, is refused, so the server never hands out a
/// file it did not index.
fn open_indexed_file(record: &ImageRecord, mounts: &Mounts) -> Result<std::fs::File> {
    let path = mounts.local_or_err(&record.file_path())?;
    let io = |source| Error::Io { path: path.clone(), source };
    let file = match walk::open_regular_file(&path) {
        // What the walk indexed was a regular file; whatever stands there now is not.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Err(Error::FileChanged { path }),
        opened => opened.map_err(io)?,
    };
    let meta = file.metadata().map_err(io)?;
    if meta.len() != record.size || walk::mtime_ns(&meta) != record.mtime_ns {
        return Err(Error::FileChanged { path });
    }
    if !has_indexed_content(&file, &meta, record).map_err(io)? {
        return Err(Error::ContentChanged { path });
    }
    Ok(file)
}

/// Whether `file` holds what `record` was indexed from, by the hash recorded then. Size and
/// time alone prove nothing: whoever may write to a photo folder can get a picture indexed with
/// the size and time of any file the server may read, then put a symbolic link to that file in
/// its place. Each file (device, inode, size, time) is hashed once, on its first request; a
/// record imported without a hash has nothing to check against.
fn has_indexed_content(file: &std::fs::File, meta: &std::fs::Metadata, record: &ImageRecord) -> std::io::Result<bool> {
    use std::io::Seek;
    type Identity = (Option<(u64, u64)>, u64, i128);
    static CHECKED: std::sync::LazyLock<std::sync::Mutex<lru::LruCache<Identity, String>>> =
        std::sync::LazyLock::new(|| {
            std::sync::Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::new(65_536).expect("not zero")))
        });
    let expected = record.file_hash();
    if expected.is_empty() {
        return Ok(true);
    }
    let identity = (walk::file_id(meta), meta.len(), walk::mtime_ns(meta));
    let checked =
        |cache: &mut lru::LruCache<Identity, String>| cache.get(&identity).is_some_and(|hash| hash == expected);
    // Without a device and inode (not Unix), every request hashes.
    if identity.0.is_some() && checked(&mut CHECKED.lock().unwrap_or_else(|p| p.into_inner())) {
        return Ok(true);
    }
    let hash = blake3::Hasher::new().update_reader(file)?.finalize().to_hex().to_string();
    (&*file).seek(std::io::SeekFrom::Start(0))?;
    if hash != expected {
        return Ok(false);
    }
    CHECKED.lock().unwrap_or_else(|p| p.into_inner()).put(identity, hash);
    Ok(true)
}

/// The bytes of a picture's file, under the same condition as [`open_indexed_file`].
fn read_indexed_file(record: &ImageRecord, mounts: &Mounts) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(record.size as usize);
    open_indexed_file(record, mounts)?
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io { path: record.file_path().to_path_buf(), source })?;
    Ok(bytes)
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Largest accepted upload, bytes.
    pub upload_limit: usize,
    /// Largest uploaded picture, pixels (thumbnails of indexed ones may be larger).
    pub max_pixels: u64,
    /// Re-index the indexed roots this often (None: no watching).
    pub watch_interval: Option<Duration>,
    /// Where the library keeps its users and tokens.
    pub auth: crate::auth::AuthStore,
    /// `--no-auth`: serve without asking anyone who they are, even beyond this computer.
    pub no_auth: bool,
    /// Requests whose work (a model pass, a search, a thumbnail) runs at once; more wait.
    pub workers: usize,
    /// How long a request may wait for a worker before it gets 503 with `Retry-After`.
    pub queue_timeout: Duration,
    /// How long a connection may send and take nothing before it is closed.
    pub idle_timeout: Duration,
    /// HTTPS: the PEM certificate chain and private key (both or neither).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Behind a reverse proxy: trust its `X-Forwarded-For` and `X-Forwarded-Proto`.
    pub trust_proxy: bool,
    /// The data folder whose `server.json` tells this computer's command line how to search
    /// through this server while it holds the folder (see [`local`]); None for PostgreSQL,
    /// which many processes open at once.
    pub announce_in: Option<PathBuf>,
}

pub struct AppState {
    /// What is served: a model space's library with its model (replaced when the library's
    /// newest model changes, see [`ModelFollower`]).
    pub engine: RwLock<SearchEngine>,
    pub options: ServeOptions,
    /// `/api/stats`' size of the data folder and when it was measured (see `FOLDER_SIZE_MAX_AGE`).
    pub folder_size: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
    pub gate: Arc<auth::Gate>,
    pub work: work::WorkQueue,
    pub health: health::Health,
}

/// How old `/api/stats`' size of the data folder may be. Measuring it stats every file (a
/// thumbnail per picture): once per this interval at most, however often clients ask.
pub const FOLDER_SIZE_MAX_AGE: Duration = Duration::from_secs(30);

/// Runs the server until Ctrl-C. Prints the address it listens on once it is ready.
/// `rescan_with`: the model and device `--watch` indexes new pictures with.
/// Moves a server onto the library's newest model when one is complete (an `index --model NEW`
/// that finished while it served).
pub struct ModelFollower {
    /// How often to look.
    pub every: Duration,
    pub newer: NewerModel,
}

/// The newest model's engine (its library and loaded model) with its spec, when it is not the
/// one served; `Err` says why it cannot be opened.
pub type NewerModel = Box<dyn FnMut() -> std::result::Result<Option<(SearchEngine, ModelSpec)>, String> + Send>;

/// The model spec a `--watch` rescan embeds new pictures with: the served space's. A rescan
/// holds it for its whole run, so that a switch to another model waits for the run to end (its
/// pictures must not reach the new model's space).
type RescanModel = Arc<RwLock<ModelSpec>>;

pub fn serve(
    engine: SearchEngine,
    options: ServeOptions,
    rescan_with: Option<(ModelSpec, Device)>,
    follower: Option<ModelFollower>,
) -> Result<()> {
    warm_up(&engine)?;
    let tls = options.tls.as_ref().map(|(cert, key)| tls::server_config(cert, key)).transpose()?;
    let local_token = options.announce_in.as_ref().map(|_| local::new_token());
    let gate = gate(&options, tls.is_some())?.with_local_token(local_token.clone());
    let state = Arc::new(AppState {
        engine: RwLock::new(engine),
        options: options.clone(),
        folder_size: std::sync::Mutex::new(None),
        gate: Arc::new(gate),
        work: work::WorkQueue::new(options.workers, options.queue_timeout),
        health: health::Health::default(),
    });
    let rescan_model: Option<RescanModel> = rescan_with.as_ref().map(|(spec, _)| Arc::new(RwLock::new(spec.clone())));
    if let (Some(interval), Some((_, device)), Some(model)) = (options.watch_interval, rescan_with, &rescan_model) {
        spawn_rescans(state.clone(), model.clone(), device, interval);
    }
    if let Some(follower) = follower {
        spawn_follower(state.clone(), follower, rescan_model);
    }
    let kept = state.clone();
    // Request work runs on `workers` blocking threads at most (see `work`); a few more serve
    // sign-in checks and file reads. The async side needs few threads: it only waits.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(options.workers + work::SPARE_BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(|source| crate::Error::Io { path: PathBuf::from("tokio runtime"), source })?;
    // A clone outlives the runtime: the library's last reference must not drop inside it (the
    // PostgreSQL backend's connections close by blocking on their own runtime).
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.addr).await.map_err(|e| listen_error(options.addr, e))?;
        let local =
            listener.local_addr().map_err(|source| crate::Error::Io { path: PathBuf::from("socket"), source })?;
        // Announced before the banner: whoever waits for the banner finds the server's file.
        let _announced = match (&options.announce_in, &local_token) {
            (Some(folder), Some(token)) => Some(local::announce(folder, local, tls.is_some(), token)?),
            _ => None,
        };
        println!("imgsearch serving on {}://{local}/", if tls.is_some() { "https" } else { "http" });
        tracing::info!(
            "CPU kernels: {}, {} threads (IMGSEARCH_ISA forces a lower path, --threads sets the threads)",
            crate::model::kernels::isa().name(),
            crate::cpu_threads()
        );
        match crate::ingest::heif::decoder() {
            Ok(decoder) => tracing::info!("HEIC and AVIF pictures: {decoder}"),
            Err(why) => tracing::warn!("HEIC and AVIF pictures cannot be read here: {why}"),
        }
        match crate::ingest::video::decoder() {
            Ok(decoder) => tracing::info!("videos: {decoder}"),
            Err(why) => tracing::warn!("videos cannot be read here: {why}"),
        }
        let app = routes::router(state);
        let io = |source| crate::Error::Io { path: PathBuf::from(local.to_string()), source };
        let (max_open, idle) = (connections::max_open(), options.idle_timeout);
        let head_within = idle.min(connections::HEAD_WITHIN);
        match tls {
            Some(config) => {
                let listener = tls::TlsListener::new(listener, config).map_err(io)?;
                serving::serve(connections::Bounded::new(listener, max_open, idle), app, head_within).await
            }
            None => serving::serve(connections::Bounded::new(listener, max_open, idle), app, head_within).await,
        }
        Ok(())
    });
    drop(runtime);
    drop(kept);
    served
}

/// A GPU's first query compiles candle's kernels (seconds with CUDA, whose PTX the driver
/// compiles on first use: 3.4 s for the first text search on an H200): paid before serving.
fn warm_up(engine: &SearchEngine) -> Result<()> {
    engine.clip("text")?.embed_texts(&["warm-up"])?;
    Ok(())
}

fn spawn_follower(state: Arc<AppState>, mut follower: ModelFollower, rescan_model: Option<RescanModel>) {
    let mut last_problem = String::new();
    std::thread::spawn(move || loop {
        std::thread::sleep(follower.every);
        match (follower.newer)() {
            Ok(None) => {}
            Ok(Some((engine, spec))) => {
                if let Err(e) = warm_up(&engine) {
                    tracing::error!("cannot switch to the newest model {}: {e}", spec.info().model);
                    continue;
                }
                tracing::info!("the library's newest model is complete: now serving {}", spec.info().model);
                // After a rescan in progress, which writes with the old model.
                let rescanning_with = rescan_model.as_ref().map(|m| m.write().unwrap_or_else(|p| p.into_inner()));
                // The old space (and, on the embedded backend, its folder's lock) goes with the
                // last request that still reads it.
                *state.engine.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = engine;
                *state.folder_size.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                if let Some(mut model) = rescanning_with {
                    *model = spec;
                }
            }
            // Said once, not every few seconds while it lasts.
            Err(e) if e != last_problem => {
                tracing::warn!("cannot move on to the library's newest model: {e}");
                last_problem = e;
            }
            Err(_) => {}
        }
    });
}

/// Who may use the server (see `auth`). Listening beyond this computer with nobody able to sign
/// in is refused, unless `--no-auth` says so (then with a warning).
fn gate(options: &ServeOptions, https: bool) -> Result<auth::Gate> {
    let exposed = !options.addr.ip().is_loopback();
    let gate = auth::Gate::new(options.auth.clone(), options.no_auth, exposed, https, options.trust_proxy)?;
    if options.no_auth {
        if exposed {
            tracing::warn!(
                "--no-auth: anyone who can reach {} sees every photo, with its path, EXIF and GPS",
                options.addr
            );
        }
        return Ok(gate);
    }
    if exposed && !options.auth.load()?.has_credentials() {
        return Err(Error::Listen {
            addr: options.addr.to_string(),
            reason: "listening beyond this computer needs sign-in, and the library has no users or tokens yet: \
                     add one with `imgsearch user add NAME` (or `imgsearch token create` for scripts), or pass \
                     --no-auth to serve without sign-in"
                .into(),
        });
    }
    Ok(gate)
}

/// Why the server cannot listen, and what to do about it.
fn listen_error(addr: SocketAddr, e: std::io::Error) -> Error {
    let reason = match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "the port {} is already in use (by another `imgsearch serve` or another program): stop that program, \
             or pick another port with --addr {}:{}",
            addr.port(),
            addr.ip(),
            addr.port().wrapping_add(1).max(1024)
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("{e}: ports below 1024 need administrator rights; pick a port above 1024 with --addr")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("{e}: this computer has no such address; use 127.0.0.1, or one of its own addresses, with --addr")
        }
        _ => format!("{e}; check the address given to --addr"),
    };
    Error::Listen { addr: addr.to_string(), reason }
}

/// `--watch`: a file watcher (notify) wakes an incremental rescan as soon as something changes
/// under the indexed roots; a periodic rescan stays the source of truth, because watchers miss
/// events on network shares and run out of inotify watches on big trees. The watches are in place
/// when this returns (before the server says it is listening, so no change after that is missed),
/// and the first rescan runs at once (for what changed while no server watched).
fn spawn_rescans(state: Arc<AppState>, model: RescanModel, device: Device, interval: Duration) {
    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
    let mut watched = WatchedRoots::of(indexed_roots(&state).into_iter().map(|(_, here)| here).collect());
    // None if the platform refuses a watcher: then the timer alone rescans.
    let watcher = watch_roots(&watched.paths, wake_tx.clone());
    tracing::info!(
        "watch: {} folder(s) {}, rescanned every {} s",
        watched.paths.len(),
        if watcher.is_some() { "watched for changes" } else { "not watched (no file watcher)" },
        interval.as_secs()
    );
    std::thread::spawn(move || {
        let mut _watcher = watcher; // kept alive for the thread's lifetime, renewed below
        let mut said = Said::default();
        loop {
            let spec = model.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            rescan(&state, &spec, &device, &mut said);
            drop(spec);
            // A root deleted and made again, or a share mounted anew, is another folder: the
            // watches on the old one see nothing of it. Looked at after each rescan (which reads
            // the roots, new ones included) and, by a stat each, while waiting for the next.
            let mut roots_now = WatchedRoots::of(indexed_roots(&state).into_iter().map(|(_, here)| here).collect());
            let next_rescan = std::time::Instant::now() + interval;
            loop {
                if roots_now != watched {
                    tracing::info!("watch: the indexed folders changed on disk; watching them again");
                    _watcher = watch_roots(&roots_now.paths, wake_tx.clone());
                    watched = roots_now;
                    break;
                }
                let left = next_rescan.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                if wake_rx.recv_timeout(left.min(ROOTS_LOOKED_AT_EVERY)).is_ok() {
                    // Let a burst of changes (a camera import) settle into one rescan.
                    std::thread::sleep(Duration::from_millis(500));
                    while wake_rx.try_recv().is_ok() {}
                    break;
                }
                roots_now = WatchedRoots::of(watched.paths.clone());
            }
        }
    });
}

/// How often `--watch` looks whether its roots are still the folders it watches (a stat each).
const ROOTS_LOOKED_AT_EVERY: Duration = Duration::from_secs(2);

/// The roots a watcher was set on, with each one's device and inode (`None`: not there then).
#[derive(PartialEq)]
struct WatchedRoots {
    paths: Vec<PathBuf>,
    identities: Vec<Option<(u64, u64)>>,
}

impl WatchedRoots {
    fn of(paths: Vec<PathBuf>) -> Self {
        let identities =
            paths.iter().map(|path| std::fs::metadata(path).ok().and_then(|meta| walk::file_id(&meta))).collect();
        Self { paths, identities }
    }
}

/// Every folder ever indexed into this library, with the options it was indexed with and where
/// it is on this host (named roots this host does not mount are left out).
fn indexed_roots(state: &AppState) -> Vec<(IndexedRoot, PathBuf)> {
    let engine = state.engine.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let roots = engine.library().indexed_roots().unwrap_or_else(|e| {
        tracing::error!("watch: cannot read the indexed folders ({e}); nothing is rescanned");
        Vec::new()
    });
    roots.into_iter().filter_map(|root| engine.mounts().root_here(&root).map(|here| (root, here))).collect()
}

fn watch_roots(roots: &[PathBuf], wake: std::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = wake.send(());
        }
    })
    .map_err(|e| tracing::warn!("watch: no file watcher ({e}); rescanning periodically only"))
    .ok()?;
    for root in roots {
        if let Err(e) = watcher.watch(root, notify::RecursiveMode::Recursive) {
            tracing::warn!("watch: cannot watch {} ({e}); it is still rescanned periodically", root.display());
        }
    }
    Some(watcher)
}

/// A rescan's access to the served data folder: the write lock only while it writes a batch.
struct LockedData<'a>(&'a RwLock<SearchEngine>);

impl DataAccess for LockedData<'_> {
    fn with<R>(&mut self, f: impl FnOnce(&mut dyn Library) -> R) -> R {
        f(self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()).library_mut())
    }
}

/// Re-indexes every indexed folder that still exists, each with the options it was indexed with
/// (one run per folder: a run removes what it no longer finds under its own roots only).
/// What rescans have logged, so that the log says each thing when it changes, not every few
/// seconds.
#[derive(Default)]
struct Said {
    /// Unnamed roots that now lead elsewhere through a symbolic link.
    moved_roots: std::collections::HashSet<PathBuf>,
    /// Files each root's last rescan skipped (damaged, unreadable, a pipe...).
    skipped: std::collections::HashMap<PathBuf, u64>,
}

fn rescan(state: &AppState, spec: &ModelSpec, device: &Device, said: &mut Said) {
    for (root, here) in indexed_roots(state).into_iter().filter(|(_, here)| here.exists()) {
        // An unnamed root's pictures are stored under its path: walked through a link to
        // another, they would be stored anew under that one, and dropped again as not this
        // root's, at every rescan.
        let leads_to = std::fs::canonicalize(&here).ok().filter(|real| *real != here);
        if let (None, Some(real)) = (&root.name, leads_to) {
            if said.moved_roots.insert(here.clone()) {
                tracing::warn!(
                    "watch: {} now leads to {} through a symbolic link, and is not rescanned: `imgsearch index {}` \
                     then `imgsearch forget {}` moves its pictures there",
                    here.display(),
                    real.display(),
                    real.display(),
                    here.display()
                );
            }
            continue;
        }
        let options = IndexOptions {
            roots: vec![Root { name: root.name, path: here.clone() }],
            mounts: state.engine.read().unwrap_or_else(|poisoned| poisoned.into_inner()).mounts().clone(),
            hidden: root.hidden,
            batch_size: pipeline::default_batch_size(device),
            max_pixels: root.max_pixels,
            max_file_size: root.max_file_size,
            progress: false,
            // An unmounted share must not empty the served library.
            remove_from_empty: false,
            rescan: true,
        };
        let clip = state.engine.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clip("image").cloned();
        match clip.and_then(|clip| pipeline::run(LockedData(&state.engine), spec, Some(&clip), device, &options)) {
            Ok(s) => {
                if s.indexed + s.reused + s.removed > 0 {
                    tracing::info!("watch: {} indexed, {} reused, {} removed", s.indexed, s.reused, s.removed)
                }
                if said.skipped.insert(here.clone(), s.skipped) != Some(s.skipped) && s.skipped > 0 {
                    // Debug-quoted: a file name may hold a newline, which would forge a log line.
                    let first =
                        s.errors.first().map(|e| format!(" (one: {:?}: {:?})", e.path, e.reason)).unwrap_or_default();
                    tracing::warn!("watch: {} file(s) under {} skipped{first}", s.skipped, here.display());
                }
            }
            Err(e) => tracing::error!("watch: rescan failed: {e}"),
        }
    }
}
