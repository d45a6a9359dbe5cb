//! Camera RAW files → the JPEG the camera embedded in them.
//!
//! Every common RAW format (Canon CR2 and CR3, Nikon NEF, Sony ARW, Adobe DNG, Fujifilm RAF,
//! Olympus ORF, Panasonic RW2, Pentax PEF, ...) carries a JPEG the camera rendered from the
//! sensor data, mostly at full or near-full size: what the camera's own screen shows, and far
//! more than a model's 224–384 pixels need. imgsearch embeds that JPEG, as photo managers show a
//! RAW before it is developed, rather than demosaicing the sensor data itself.
//!
//! The preview is found by content, not by each vendor's layout: of the JPEG streams in the file
//! whose header reads as a DCT (baseline or progressive) frame, the largest wins. Some formats
//! store the sensor data itself as lossless JPEG (CR2, DNG); that is a mosaic, not a picture, and
//! is passed over.

use std::io::Cursor;
use std::path::Path;

/// File name extensions of camera RAW formats.
const RAW_EXTENSIONS: &[&str] = &[
    "3fr", "arw", "cr2", "cr3", "dcr", "dng", "erf", "iiq", "k25", "kdc", "mef", "mos", "mrw", "nef", "nrw", "orf",
    "pef", "raf", "rw2", "rwl", "sr2", "srf", "srw", "x3f",
];

/// The RAW format of these bytes (named `path`): by a magic number no other picture format uses
/// (`raf`, `cr3`, `orf`, `rw2`), or by the extension of a file whose content is a RAW container
/// (TIFF, Sigma's, Minolta's): `nef`, `dng`, ... None for anything else, a JPEG renamed `.NEF`
/// included.
pub fn raw_format(bytes: &[u8], path: &Path) -> Option<String> {
    let by_content = if bytes.starts_with(b"FUJIFILMCCD-RAW") {
        Some("raf")
    } else if bytes.starts_with(b"IIRO") || bytes.starts_with(b"IIRS") || bytes.starts_with(b"MMOR") {
        Some("orf")
    } else if bytes.starts_with(b"IIU\0") {
        Some("rw2")
    } else if bytes.len() >= 12 && &bytes[4..12] == b"ftypcrx " {
        Some("cr3")
    } else {
        None
    };
    let container = [b"II*\0", b"MM\0*", b"FOVb", b"\0MRM"].iter().any(|magic| bytes.starts_with(*magic));
    match by_content {
        Some(format) => Some(format.to_string()),
        None if container => raw_extension(path),
        None => None,
    }
}

/// The extension of `path`, lower case, if it is a camera RAW format's.
pub fn raw_extension(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    RAW_EXTENSIONS.contains(&extension.as_str()).then_some(extension)
}

/// The picture JPEGs embedded in a RAW file, largest first, at most [`MAX_PREVIEWS`]: each from
/// its start marker to the end of the file (decoders stop at its end marker). The caller takes
/// the first that decodes, so that a few bytes that only look like a large JPEG cannot hide the
/// real preview.
pub fn embedded_previews(bytes: &[u8]) -> Vec<&[u8]> {
    let mut found: Vec<(u64, usize)> = memchr::memmem::find_iter(bytes, &[0xFF, 0xD8, 0xFF])
        .take(MAX_STARTS)
        .filter_map(|start| picture_pixels(&bytes[start..]).map(|pixels| (pixels, start)))
        .collect();
    found.sort_by_key(|&(pixels, start)| (std::cmp::Reverse(pixels), start));
    found.into_iter().take(MAX_PREVIEWS).map(|(_, start)| &bytes[start..]).collect()
}

/// Start markers looked at in one file. Cameras embed two or three JPEGs, and a DNG stores its
/// sensor data as a few hundred lossless-JPEG tiles; a file made of nothing but start markers
/// must not cost minutes.
const MAX_STARTS: usize = 4096;

/// Previews tried, largest first: the camera's full-size and medium ones and their thumbnail,
/// and room for one look-alike; a file of many huge look-alikes must not cost a decode each.
const MAX_PREVIEWS: usize = 4;

/// Why a RAW file without a usable preview is skipped, and what to do.
pub const NO_PREVIEW: &str = "a camera RAW file without an embedded JPEG preview that imgsearch can read: it \
                              indexes the picture cameras embed in their RAW files, not the sensor data. \
                              Export a JPEG of it from your RAW developer (or shoot RAW+JPEG) to have it \
                              indexed";

/// Width × height of the JPEG at the start of `jpeg` if it is a picture (a DCT frame), None if it
/// is lossless (sensor data) or its header does not parse (bytes that only look like a start).
fn picture_pixels(jpeg: &[u8]) -> Option<u64> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(jpeg));
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let picture = !matches!(info.coding_process, jpeg_decoder::CodingProcess::Lossless);
    (picture && info.width > 0 && info.height > 0).then(|| u64::from(info.width) * u64::from(info.height))
}

/// The body of the first box called `name` in a Canon CR3 (an ISO base media file), found in
/// the file's first megabyte, where its `moov` box and the metadata in it lie. None if there is
/// none or its size runs past the file.
pub fn canon_box<'a>(bytes: &'a [u8], name: &[u8; 4]) -> Option<&'a [u8]> {
    let head = &bytes[..bytes.len().min(1 << 20)];
    let at = memchr::memmem::find(head, name)?.checked_sub(4)?;
    let size = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
    bytes.get(at + 8..at.checked_add(size)?)
}

/// The RAW file's own TIFF header, for formats whose magic number differs from TIFF's only in
/// its two version bytes (Olympus ORF, Panasonic RW2): the same bytes with TIFF's 42, which EXIF
/// readers accept. None for every other file.
pub fn as_tiff(bytes: &[u8]) -> Option<Vec<u8>> {
    let version = match bytes.get(..4)? {
        b"IIRO" | b"IIRS" | b"IIU\0" => [0x2A, 0x00],
        b"MMOR" => [0x00, 0x2A],
        _ => return None,
    };
    let mut tiff = bytes.to_vec();
    tiff[2..4].copy_from_slice(&version);
    Some(tiff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_files_are_known_by_extension_or_by_their_own_magic_numbers() {
        let tiff = b"II*\0\x08\0\0\0";
        assert_eq!(raw_format(tiff, Path::new("DSC_0001.NEF")).as_deref(), Some("nef"));
        assert_eq!(raw_format(tiff, Path::new("scan.tif")), None, "a TIFF is a TIFF");
        assert_eq!(raw_format(b"\xFF\xD8\xFF\xE0", Path::new("renamed.NEF")), None, "a JPEG is a JPEG");
        assert_eq!(raw_format(b"FUJIFILMCCD-RAW 0201", Path::new("upload")).as_deref(), Some("raf"));
        assert_eq!(raw_format(b"IIRO\x08\0\0\0", Path::new("P1.jpg")).as_deref(), Some("orf"));
        assert_eq!(raw_format(b"\0\0\0\x18ftypcrx \0\0\0\x01", Path::new("x")).as_deref(), Some("cr3"));
        assert_eq!(raw_format(b"\0\0\0\x18ftypheic\0\0\0\0", Path::new("x.heic")), None);
    }

    #[test]
    fn orf_and_rw2_headers_become_tiff_headers() {
        assert_eq!(as_tiff(b"IIRO\x08\0\0\0").unwrap(), b"II*\0\x08\0\0\0");
        assert_eq!(as_tiff(b"MMOR\0\0\0\x08").unwrap(), b"MM\0*\0\0\0\x08");
        assert_eq!(as_tiff(b"IIU\0\x08\0\0\0").unwrap(), b"II*\0\x08\0\0\0");
        assert!(as_tiff(b"II*\0\x08\0\0\0").is_none());
    }
}
