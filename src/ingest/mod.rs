//! Getting pictures in: walk the roots, decode, read EXIF, and the batched indexing pipeline.

pub mod captions;
pub mod decode;
pub mod exif;
pub mod geotiff;
pub mod heif;
pub mod jpeg_reduced;
pub mod measured_tiff;
pub mod pipeline;
pub mod raw;
pub mod takeout;
pub mod video;
pub mod walk;
