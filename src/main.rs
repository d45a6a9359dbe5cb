//! The `imgsearch` binary: parse the command line, run it, report errors with their causes.

mod cli;

// Tensors of many MB are allocated and freed per layer; glibc's malloc hands them back to the OS
// and page-faults them in again each time (measured ~5% of the image tower). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::process::ExitCode;

/// How long mimalloc keeps freed memory before giving it back to the OS (1 s by default in
/// mimalloc 3, 10 ms in 2). `MIMALLOC_PURGE_DELAY` set by the user wins.
///
/// - Commands that run the model in batches keep it [`BATCH_PURGE_DELAY_MS`]: a batch frees
///   tensors of many MB that the next batch allocates again, and a batch of 32 pictures takes
///   longer than 1 s (1.3 s on two Zen 4 cores), so mimalloc 3's default handed them back and the
///   kernel zeroed them in again every batch: 1.7% of the image tower's samples, 0.4% at 10 s, and
///   images/s 1.4% higher at batch 8 and 32 (six rounds alternated).
/// - `serve` keeps it [`SERVE_PURGE_DELAY_MS`]: a server's freed response and connection buffers
///   then stop piling up (`scripts/serve_load.py`, benches/README.md "Serving under load"), while
///   a forward pass still reuses its own temporaries. Giving memory back at once (0) cost
///   uploaded pictures and `--watch` 15-23% of the image tower's speed.
pub(crate) fn keep_freed_memory_for(milliseconds: std::ffi::c_long) {
    extern "C" {
        fn mi_version() -> std::ffi::c_int;
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // `mi_option_purge_delay` in mimalloc 2's and 3's mimalloc.h (not exported by
    // libmimalloc-sys without its `extended` feature).
    const PURGE_DELAY: std::ffi::c_int = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_version` takes nothing; `mi_option_set` an option number and a value. The
    // version check (major × 10,000 + minor × 100 + patch) guards against another numbering.
    unsafe {
        if matches!(mi_version() / 10_000, 2 | 3) {
            mi_option_set(PURGE_DELAY, milliseconds);
        }
    }
}

/// Long enough to span a batch on slow machines too; a finished command exits anyway.
const BATCH_PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Measured on two Zen 4 cores, tiny model, 200 clients: peak memory 1.07-1.09× the idle server's
/// at 0 ms, 1.10-1.14× at 100 ms, 1.21-1.27× at 1 s; the image tower (ViT-B/32 shape, batch 1 / 8)
/// 20.2 / 18.6 images/s at 0 ms, 23.8 / 23.4 at 100 ms, 23.7 / 24.4 at 1 s.
pub(crate) const SERVE_PURGE_DELAY_MS: std::ffi::c_long = 100;

/// A command whose output is piped into a reader that stops early (`imgsearch list | head`) ends
/// quietly, as other command-line tools do, instead of panicking on the broken pipe: Rust ignores
/// SIGPIPE, and `println!` panics on the failed write. Not for `serve`, which must outlive any
/// client (its sockets are written with MSG_NOSIGNAL anyway).
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if !matches!(cli.command, cli::Command::Serve(_)) {
        end_quietly_on_a_closed_pipe();
    }
    keep_freed_memory_for(BATCH_PURGE_DELAY_MS);
    // What the server and `--watch` log goes to stderr, at `info` unless RUST_LOG says otherwise
    // (e.g. RUST_LOG=warn, or RUST_LOG=imgsearch::http=off to silence the request lines).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).init();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut said = err.to_string();
            eprintln!("error: {said}");
            // A cause the message already quotes (most name their source) is not said twice.
            for cause in err.chain().skip(1).map(|cause| cause.to_string()) {
                if !said.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                    said.push_str(&cause);
                }
            }
            ExitCode::FAILURE
        }
    }
}
