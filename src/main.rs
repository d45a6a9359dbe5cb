//! The `imgsearch` binary: parse the command line, run it, report errors with their causes.

mod cli;

// Tensors of many MB are allocated and freed per layer; glibc's malloc hands them back to the OS
// and page-faults them in again each time (measured ~5% of the image tower). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::process::ExitCode;

/// Makes mimalloc give freed memory back to the OS at once rather than after its purge delay
/// (10 ms, and then only when the freeing thread allocates again). A server's freed response
/// and connection buffers then stop piling up: with 200 clients its resident memory went from
/// 1.58× to 1.20× the idle server's (`scripts/serve_load.py`). The price, ~15% on the image
/// tower's many large temporaries, is why only `serve` asks for it. `MIMALLOC_PURGE_DELAY`
/// set by the user wins.
pub(crate) fn purge_freed_memory_at_once() {
    extern "C" {
        fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // `mi_option_purge_delay` in mimalloc 3's mimalloc.h (not exported by libmimalloc-sys).
    const PURGE_DELAY: std::ffi::c_int = 15;
    const DEFAULT_DELAY_MS: std::ffi::c_long = 10;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: both take an option number and a value; an unknown number is ignored. The check
    // that the option holds purge_delay's default guards against another numbering.
    unsafe {
        if mi_option_get(PURGE_DELAY) == DEFAULT_DELAY_MS {
            mi_option_set(PURGE_DELAY, 0);
        }
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // What the server and `--watch` log goes to stderr, at `info` unless RUST_LOG says otherwise
    // (e.g. RUST_LOG=warn, or RUST_LOG=imgsearch::http=off to silence the request lines).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).init();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
