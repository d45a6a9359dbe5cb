//! imgsearch: semantic image search over a personal photo library.
//!
//! Data flows one way: files → [`ingest`] (decode) → [`model`] (CLIP preprocessing and encoders)
//! → embeddings. See ARCHITECTURE.md for the whole picture.

pub mod auth;
pub mod error;
pub mod geo;
pub mod ingest;
pub mod model;
pub mod progress;
pub mod search;
pub mod server;
pub mod store;

pub use error::{Error, Result};
pub use model::{Clip, DeviceChoice, Embedding, Precision, DEFAULT_MODEL};

/// How many threads imgsearch computes with: the encoders' pool, the pictures decoded at once by
/// `index`, the requests `serve` works on at once. `--threads` (or `IMGSEARCH_THREADS`,
/// `RAYON_NUM_THREADS`) sets it; by default one per CPU this process may use, so `taskset` and a
/// container's or systemd unit's CPU limit count.
pub fn cpu_threads() -> usize {
    rayon::current_num_threads()
}
