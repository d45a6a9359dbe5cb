//! Getting pictures in: decoding files into upright RGB images.

pub mod decode;
