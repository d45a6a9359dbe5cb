//! The integration tests, one module per face of the product, in one test binary: each drives
//! the real `imgsearch` binary, its HTTP API, a headless browser or the library's public API.
//! One crate instead of one per file: the crate's dependencies link once, not seventeen times,
//! and `common` is compiled once and shared. Run one module with a filter, e.g.
//! `cargo test --test it -- server::`.

mod common;

mod ann;
mod auth;
mod browser;
mod captions;
mod cli_embed;
mod cli_search;
mod duplicates;
mod exchange;
mod heif;
mod index;
mod jpeg_reduced;
mod kernels;
mod models;
mod parity;
mod postgres;
mod preprocess;
mod raw;
mod server;
mod tags;
mod tls;
mod video;
