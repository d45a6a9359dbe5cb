//! The `imgsearch` binary: parse the command line, run it, report errors with their causes.

mod cli;

// Tensors of many MB are allocated and freed per layer; glibc's malloc hands them back to the OS
// and page-faults them in again each time (measured ~5% of the image tower). mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::process::ExitCode;

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
