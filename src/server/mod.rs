//! `imgsearch serve`: the REST API and the web UI (axum + tokio). The model and the index are
//! loaded once; model work runs on blocking threads so the async runtime keeps answering.

mod error;
mod routes;
mod thumbnails;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use candle_core::Device;

use crate::error::Result;
use crate::ingest::pipeline::{self, IndexOptions};
use crate::model::ModelSpec;
use crate::search::SearchEngine;

pub use error::ApiError;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Largest accepted upload, bytes.
    pub upload_limit: usize,
    pub max_pixels: u64,
    /// Re-index the indexed roots this often (None: no watching).
    pub watch_interval: Option<Duration>,
}

pub struct AppState {
    pub engine: RwLock<SearchEngine>,
    pub options: ServeOptions,
    pub thumbnails: PathBuf,
}

/// Runs the server until Ctrl-C. Prints the address it listens on once it is ready.
pub fn serve(engine: SearchEngine, spec: ModelSpec, device: Device, options: ServeOptions) -> Result<()> {
    let thumbnails = engine.data.root.join("thumbnails");
    let state = Arc::new(AppState { engine: RwLock::new(engine), options: options.clone(), thumbnails });
    if let Some(interval) = options.watch_interval {
        spawn_rescans(state.clone(), spec, device, interval);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| crate::Error::Io { path: PathBuf::from("tokio runtime"), source })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(|source| crate::Error::Io { path: PathBuf::from(options.addr.to_string()), source })?;
        let local =
            listener.local_addr().map_err(|source| crate::Error::Io { path: PathBuf::from("socket"), source })?;
        println!("imgsearch serving on http://{local}/");
        axum::serve(listener, routes::router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|source| crate::Error::Io { path: PathBuf::from(local.to_string()), source })
    })
}

/// `--watch`: a periodic rescan of the roots the last `index` run covered is the source of
/// truth (file watchers miss events on network shares and run out of watches); each rescan is
/// incremental, so an idle library costs one walk.
fn spawn_rescans(state: Arc<AppState>, spec: ModelSpec, device: Device, interval: Duration) {
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        let mut engine = match state.engine.write() {
            Ok(engine) => engine,
            Err(poisoned) => poisoned.into_inner(),
        };
        let roots: Vec<PathBuf> = match engine.data.catalog.last_run() {
            Ok(Some(run)) => {
                run["roots"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).map(PathBuf::from).collect()
            }
            _ => continue,
        };
        let roots: Vec<PathBuf> = roots.into_iter().filter(|r| r.exists()).collect();
        if roots.is_empty() {
            continue;
        }
        let options = IndexOptions {
            roots,
            hidden: false,
            batch_size: 16,
            max_pixels: state.options.max_pixels,
            max_file_size: 200 * 1024 * 1024,
            progress: false,
        };
        match pipeline::run(&mut engine.data, &spec, &device, &options) {
            Ok(s) if s.indexed + s.reused + s.removed > 0 => {
                eprintln!("watch: {} indexed, {} reused, {} removed", s.indexed, s.reused, s.removed)
            }
            Ok(_) => {}
            Err(e) => eprintln!("watch: rescan failed: {e}"),
        }
    });
}
