//! `imgsearch serve`: the web UI and REST API on 127.0.0.1.

use imgsearch::store::Location;
use std::net::SocketAddr;
use std::time::Duration;

use imgsearch::ingest::decode::DEFAULT_UPLOAD_MAX_PIXELS;
use imgsearch::model::Towers;
use imgsearch::server::{serve, ModelFollower, ServeOptions};
use imgsearch::store::spaces;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. The default keeps it on this computer; a LAN address exposes your
    /// photos to the network.
    #[arg(long, default_value = "127.0.0.1:7878")]
    addr: SocketAddr,
    /// Watch the indexed folders: re-index changes while serving (file watcher + periodic rescan).
    #[arg(long)]
    watch: bool,
    /// Seconds between full rescans with --watch (the file watcher triggers one sooner).
    #[arg(long, default_value_t = 30)]
    watch_interval: u64,
    /// Largest accepted upload for reverse search, in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    upload_limit: usize,
    /// Refuse uploaded pictures with more pixels than this (each takes up to 6 bytes a pixel
    /// while it is decoded). Thumbnails of indexed pictures may be larger.
    #[arg(long, default_value_t = DEFAULT_UPLOAD_MAX_PIXELS)]
    max_pixels: u64,
    /// Serve without sign-in, even on a network address (everyone who can reach the port sees
    /// every photo). Without it, a non-loopback --addr needs a user (`imgsearch user add`).
    #[arg(long)]
    no_auth: bool,
    /// Requests worked on at once (searches, model passes, thumbnails); others wait. Default:
    /// one per core.
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds a request may wait for a worker before it gets 503 with Retry-After.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    queue_timeout: f64,
    /// Seconds a connection may send and take nothing (a half-sent request, an idle keep-alive)
    /// before it is closed; a request's line and headers must also arrive within this time, and
    /// within 30 seconds.
    #[arg(long, default_value_t = imgsearch::server::DEFAULT_IDLE_TIMEOUT.as_secs_f64(), value_parser = seconds)]
    idle_timeout: f64,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); cookies are then `Secure`.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// Behind a reverse proxy: take the client's address from the last `X-Forwarded-For` entry
    /// and HTTPS from `X-Forwarded-Proto` (off by default: any client could send them).
    #[arg(long)]
    trust_proxy: bool,
    /// Serve this model's embeddings, where the library holds several (`imgsearch stats` lists
    /// them). Default: the newest model whose indexing finished.
    #[arg(long)]
    model: Option<String>,
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.0..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("expected seconds from 0 to 3600, not {text:?}")),
    }
}

pub fn run(
    args: ServeArgs,
    library: Location,
    compute: super::ComputeArgs,
    mounts: &[(String, std::path::PathBuf)],
) -> anyhow::Result<()> {
    crate::keep_freed_memory_for(crate::SERVE_PURGE_DELAY_MS);
    let opened = super::open_index(&library, args.model.as_deref(), compute.clone(), Towers::Both, mounts)?;
    let options = ServeOptions {
        addr: args.addr,
        upload_limit: args.upload_limit,
        max_pixels: args.max_pixels,
        watch_interval: args.watch.then(|| Duration::from_secs(args.watch_interval.max(1))),
        auth: imgsearch::auth::AuthStore::for_library(&library),
        no_auth: args.no_auth,
        workers: args.workers.unwrap_or_else(imgsearch::server::default_workers).max(1),
        queue_timeout: Duration::from_secs_f64(args.queue_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout.max(0.1)),
        tls: args.tls_cert.zip(args.tls_key),
        trust_proxy: args.trust_proxy,
        announce_in: match &library {
            Location::Folder(folder) => Some(folder.clone()),
            Location::Postgres { .. } => None,
        },
    };
    // Unless told which model to serve, move on to the library's newest model when an `index
    // --model NEW` completes it.
    let follower = args.model.is_none().then(|| {
        let mut served = opened.space.clone();
        let mounts = mounts.to_vec();
        ModelFollower {
            every: Duration::from_secs(5),
            newer: Box::new(move || {
                let newest = spaces::for_search(&library, None).map_err(|e| e.to_string())?;
                if newest.location == served {
                    return Ok(None);
                }
                let model = newest.model.as_deref();
                let opened = super::open_index(&library, model, compute.clone(), Towers::Both, &mounts)
                    .map_err(|e| format!("{e:#}"))?;
                served = newest.location;
                Ok(Some((opened.engine, opened.spec)))
            }),
        }
    });
    serve(opened.engine, options, Some((opened.spec, opened.device)), follower)?;
    Ok(())
}
