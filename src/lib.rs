//! imgsearch: semantic image search over a personal photo library.
//!
//! Data flows one way: files → [`ingest`] (decode) → [`model`] (CLIP preprocessing and encoders)
//! → embeddings. See ARCHITECTURE.md for the whole picture.

pub mod auth;
pub mod error;
pub mod ingest;
pub mod model;
pub mod search;
pub mod server;
pub mod store;

pub use error::{Error, Result};
pub use model::{Clip, DeviceChoice, Embedding, Precision, DEFAULT_MODEL};
