//! The `imgsearch` binary: parse the command line, run it, report errors with their causes.

mod cli;

// Tensors of many MB are allocated and freed per layer; glibc's malloc hands them back to the OS
// and page-faults them in again each time (measured ~5% of the image tower). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::process::ExitCode;

/// Makes mimalloc give freed memory back to the OS at once rather than after its purge delay
/// (1 s in mimalloc 3, 10 ms in 2). A server's freed response and connection buffers then stop
/// piling up (`scripts/serve_load.py`, benches/README.md "Serving under load"). The price, ~15%
/// on the image tower's many large temporaries, is why only `serve` asks for it.
/// `MIMALLOC_PURGE_DELAY` set by the user wins.
pub(crate) fn purge_freed_memory_at_once() {
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
