//! HEIF pictures — the iPhone's HEIC, and AVIF — decoded by libheif, loaded when first needed.
//!
//! Why a C library, and why loaded at run time: no well-kept Rust crate decodes HEVC, and
//! libheif (with libde265 for HEIC, dav1d or libaom for AVIF) is what every photo tool uses and
//! every distribution packages. Linked at build time, it would stop the binary from starting on a
//! machine without it; loaded with `dlopen`, only HEIF pictures need it, and they say how to get
//! it. `IMGSEARCH_LIBHEIF` names the library file where it is not on the loader's path.
//!
//! libheif applies the container's own rotation and mirroring (`irot`/`imir`), so the picture
//! comes out upright. The EXIF orientation an iPhone also writes describes that same turn and must
//! not be applied a second time.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

use image::{DynamicImage, RgbImage, RgbaImage};

use crate::error::{Error, Result};

/// The format of an ISO-BMFF file by its `ftyp` box (major and compatible brands): `avif`,
/// `heic` (HEVC-coded HEIF, the iPhone's) or `heif` (another codec in a HEIF container).
pub fn format(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = size.clamp(16, bytes.len());
    // The major brand, then the compatible brands after the minor version.
    let brands: Vec<&[u8]> = std::iter::once(&bytes[8..12]).chain(bytes[16..end].chunks_exact(4)).collect();
    let any = |wanted: &[&[u8; 4]]| brands.iter().any(|brand| wanted.iter().any(|w| *brand == w.as_slice()));
    if any(&[b"avif", b"avis"]) {
        Some("avif")
    } else if any(&[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"]) {
        Some("heic")
    } else if any(&[b"mif1", b"msf1"]) {
        Some("heif")
    } else {
        None
    }
}

/// Decodes the primary picture of a HEIF file, upright, as 8-bit RGB (RGBA when it has alpha),
/// or the smallest thumbnail stored with it whose upright size is `large_enough`. `check_size`
/// sees the picture's size before anything is decoded (the decompression-bomb limit); `path`
/// only names the file in errors.
pub fn decode(
    bytes: &[u8],
    path: &Path,
    large_enough: impl Fn((u32, u32)) -> bool,
    check_size: impl FnOnce(u32, u32) -> Result<()>,
) -> Result<Decoded> {
    let libheif = Libheif::get().map_err(|why| Error::NoDecoder { path: path.to_owned(), reason: why.clone() })?;
    libheif.decode(bytes, large_enough, check_size).map_err(|reason| match reason {
        Failure::Size(error) => error,
        Failure::Unreadable(reason) => Error::Decode { path: path.to_owned(), reason },
        Failure::NoCodec(reason) => Error::NoDecoder {
            path: path.to_owned(),
            reason: format!(
                "{} ({reason}) has no decoder for its compression: install libheif's decoder plugins (Debian 13 \
                 and later: libheif-plugin-libde265 for HEIC, libheif-plugin-dav1d for AVIF), or set \
                 IMGSEARCH_LIBHEIF to a libheif that has them, then run `imgsearch index` again",
                libheif.file
            ),
        },
    })
}

/// Which libheif this process reads HEIF pictures with (`stats` shows it), or why it has none.
pub fn decoder() -> std::result::Result<String, String> {
    Libheif::get().map(|libheif| format!("libheif {} ({})", libheif.version(), libheif.file)).map_err(Clone::clone)
}

enum Failure {
    /// Over the size limit.
    Size(Error),
    /// Damaged, cut short, or not HEIF after all.
    Unreadable(String),
    /// Compressed with a codec this libheif cannot decode.
    NoCodec(String),
}

// libheif's C interface (heif.h), the part used here: stable since libheif 1.0 but for
// `heif_init` (1.13), which is called where it exists.
#[repr(C)]
struct HeifError {
    code: c_int,
    subcode: c_int,
    message: *const c_char,
}
enum Context {}
enum Handle {}
enum Image {}
const ERROR_UNSUPPORTED_FEATURE: c_int = 4;
const SUBERROR_UNSUPPORTED_CODEC: c_int = 3001;
const ERROR_PLUGIN_LOADING: c_int = 11;
const COLORSPACE_RGB: c_int = 1;
const CHROMA_INTERLEAVED_RGB: c_int = 10;
const CHROMA_INTERLEAVED_RGBA: c_int = 11;
const CHANNEL_INTERLEAVED: c_int = 10;

type ContextAlloc = unsafe extern "C" fn() -> *mut Context;
type ContextFree = unsafe extern "C" fn(*const Context);
type ReadFromMemory = unsafe extern "C" fn(*mut Context, *const c_void, usize, *const c_void) -> HeifError;
type PrimaryHandle = unsafe extern "C" fn(*mut Context, *mut *mut Handle) -> HeifError;
type HandleSide = unsafe extern "C" fn(*const Handle) -> c_int;
type HandleRelease = unsafe extern "C" fn(*const Handle);
type DecodeImage = unsafe extern "C" fn(*const Handle, *mut *mut Image, c_int, c_int, *const c_void) -> HeifError;
type ImageSide = unsafe extern "C" fn(*const Image, c_int) -> c_int;
type PlaneReadonly = unsafe extern "C" fn(*const Image, c_int, *mut c_int) -> *const u8;
type ImageRelease = unsafe extern "C" fn(*const Image);
type ThumbnailCount = unsafe extern "C" fn(*const Handle) -> c_int;
type ThumbnailIds = unsafe extern "C" fn(*const Handle, *mut u32, c_int) -> c_int;
type Thumbnail = unsafe extern "C" fn(*const Handle, u32, *mut *mut Handle) -> HeifError;
type GetVersion = unsafe extern "C" fn() -> *const c_char;
type Init = unsafe extern "C" fn(*const c_void) -> HeifError;

struct Libheif {
    /// The library file it was loaded from.
    file: String,
    context_alloc: ContextAlloc,
    context_free: ContextFree,
    read_from_memory: ReadFromMemory,
    primary_handle: PrimaryHandle,
    handle_width: HandleSide,
    handle_height: HandleSide,
    handle_has_alpha: HandleSide,
    handle_release: HandleRelease,
    decode_image: DecodeImage,
    image_width: ImageSide,
    image_height: ImageSide,
    plane_readonly: PlaneReadonly,
    image_release: ImageRelease,
    thumbnail_count: ThumbnailCount,
    thumbnail_ids: ThumbnailIds,
    thumbnail: Thumbnail,
    get_version: GetVersion,
    /// Keeps the functions above loaded for the life of the process.
    _library: libloading::Library,
}

/// Where libheif is looked for, after `IMGSEARCH_LIBHEIF`: the loader's path by the names the
/// platforms give it (Homebrew's folders are not on macOS's default path).
const LIBRARY_NAMES: &[&str] = if cfg!(target_os = "macos") {
    &["libheif.1.dylib", "/opt/homebrew/lib/libheif.1.dylib", "/usr/local/lib/libheif.1.dylib"]
} else if cfg!(windows) {
    &["heif.dll", "libheif.dll"]
} else {
    &["libheif.so.1", "libheif.so"]
};

impl Libheif {
    fn get() -> std::result::Result<&'static Libheif, &'static String> {
        static LIBHEIF: OnceLock<std::result::Result<Libheif, String>> = OnceLock::new();
        LIBHEIF.get_or_init(Libheif::load).as_ref()
    }

    fn load() -> std::result::Result<Libheif, String> {
        let chosen = std::env::var("IMGSEARCH_LIBHEIF").ok().filter(|file| !file.is_empty());
        let candidates: Vec<&str> = match &chosen {
            Some(file) => vec![file.as_str()],
            None => LIBRARY_NAMES.to_vec(),
        };
        let mut tried = Vec::new();
        for file in candidates {
            // SAFETY: loading runs the library's initialisers; libheif's only set up its plugin
            // registry.
            match unsafe { libloading::Library::new(file) } {
                Ok(library) => {
                    return Libheif::bind(library, file)
                        .map_err(|missing| format!("{file} is not a usable libheif (it lacks {missing})"))
                }
                Err(error) => tried.push(format!("{file}: {error}")),
            }
        }
        let install = match &chosen {
            Some(_) => "point IMGSEARCH_LIBHEIF at libheif's library file, or unset it".to_string(),
            None => format!(
                "install libheif ({}), or set IMGSEARCH_LIBHEIF to its library file",
                if cfg!(target_os = "macos") {
                    "brew install libheif"
                } else {
                    "Debian/Ubuntu: apt install libheif1; Fedora: dnf install libheif"
                }
            ),
        };
        Err(format!(
            "HEIC/HEIF and AVIF pictures are read with libheif, which could not be loaded ({}): {install}, then \
             run `imgsearch index` again",
            tried.join("; ")
        ))
    }

    fn bind(library: libloading::Library, file: &str) -> std::result::Result<Libheif, String> {
        // SAFETY: each symbol is given the C signature heif.h declares for it.
        unsafe {
            fn symbol<T: Copy>(library: &libloading::Library, name: &str) -> std::result::Result<T, String> {
                // SAFETY: the caller names T as the symbol's C type.
                unsafe { library.get::<T>(name.as_bytes()).map(|found| *found).map_err(|_| name.to_string()) }
            }
            if let Ok(init) = symbol::<Init>(&library, "heif_init") {
                // Loads libheif's codec plugins where it has them as separate files (1.14 and later).
                let error = init(ptr::null());
                if error.code != 0 {
                    return Err(format!("a working heif_init ({})", message(&error)));
                }
            }
            Ok(Libheif {
                file: file.to_string(),
                context_alloc: symbol(&library, "heif_context_alloc")?,
                context_free: symbol(&library, "heif_context_free")?,
                read_from_memory: symbol(&library, "heif_context_read_from_memory_without_copy")?,
                primary_handle: symbol(&library, "heif_context_get_primary_image_handle")?,
                handle_width: symbol(&library, "heif_image_handle_get_width")?,
                handle_height: symbol(&library, "heif_image_handle_get_height")?,
                handle_has_alpha: symbol(&library, "heif_image_handle_has_alpha_channel")?,
                handle_release: symbol(&library, "heif_image_handle_release")?,
                decode_image: symbol(&library, "heif_decode_image")?,
                image_width: symbol(&library, "heif_image_get_width")?,
                image_height: symbol(&library, "heif_image_get_height")?,
                plane_readonly: symbol(&library, "heif_image_get_plane_readonly")?,
                image_release: symbol(&library, "heif_image_release")?,
                thumbnail_count: symbol(&library, "heif_image_handle_get_number_of_thumbnails")?,
                thumbnail_ids: symbol(&library, "heif_image_handle_get_list_of_thumbnail_IDs")?,
                thumbnail: symbol(&library, "heif_image_handle_get_thumbnail")?,
                get_version: symbol(&library, "heif_get_version")?,
                _library: library,
            })
        }
    }

    fn version(&self) -> String {
        // SAFETY: heif_get_version returns a static NUL-terminated string.
        unsafe { CStr::from_ptr((self.get_version)()).to_string_lossy().into_owned() }
    }

    /// The primary picture, or its smallest thumbnail that is `large_enough`.
    fn decode(
        &self,
        bytes: &[u8],
        large_enough: impl Fn((u32, u32)) -> bool,
        check_size: impl FnOnce(u32, u32) -> Result<()>,
    ) -> std::result::Result<Decoded, Failure> {
        // SAFETY: every pointer below comes from libheif and is released by the guard that owns
        // it, after its last use; `bytes` outlives the context that reads it without copying.
        unsafe {
            let context = Owned((self.context_alloc)(), self.context_free);
            if context.0.is_null() {
                return Err(Failure::Unreadable("libheif could not allocate a context".into()));
            }
            check((self.read_from_memory)(context.0, bytes.as_ptr().cast(), bytes.len(), ptr::null()))?;
            let mut primary = ptr::null_mut();
            check((self.primary_handle)(context.0, &mut primary))?;
            let primary = Owned(primary, self.handle_release);
            let size = self.size(&primary);
            check_size(size.0, size.1).map_err(Failure::Size)?;
            let thumbnail = self.smallest_thumbnail(&primary, large_enough);
            let picture = match thumbnail.map(|thumbnail| self.decode_handle(&thumbnail)) {
                Some(Ok(picture)) => picture,
                // A thumbnail that does not decode is no reason to give up on the picture.
                Some(Err(_)) | None => self.decode_handle(&primary)?,
            };
            Ok(Decoded { picture, size })
        }
    }

    /// A handle's upright size (libheif reports it with the rotation applied).
    unsafe fn size(&self, handle: &Owned<Handle>) -> (u32, u32) {
        // SAFETY: a live handle.
        unsafe { ((self.handle_width)(handle.0).max(0) as u32, (self.handle_height)(handle.0).max(0) as u32) }
    }

    /// The smallest thumbnail stored with the picture that is `large_enough`. An iPhone stores
    /// one of 320 × 240 beside its 12 MP: decoding it takes milliseconds, the whole picture a
    /// second of one core.
    unsafe fn smallest_thumbnail(
        &self,
        primary: &Owned<Handle>,
        large_enough: impl Fn((u32, u32)) -> bool,
    ) -> Option<Owned<Handle>> {
        // SAFETY: a live handle; the id list is sized by libheif's own count.
        unsafe {
            let count = (self.thumbnail_count)(primary.0);
            if count <= 0 {
                return None;
            }
            let mut ids = vec![0u32; count as usize];
            let listed = (self.thumbnail_ids)(primary.0, ids.as_mut_ptr(), count).clamp(0, count) as usize;
            let mut best: Option<(u64, Owned<Handle>)> = None;
            for id in &ids[..listed] {
                let mut thumbnail = ptr::null_mut();
                if (self.thumbnail)(primary.0, *id, &mut thumbnail).code != 0 {
                    continue;
                }
                let thumbnail = Owned(thumbnail, self.handle_release);
                let (width, height) = self.size(&thumbnail);
                let area = width as u64 * height as u64;
                if large_enough((width, height)) && best.as_ref().is_none_or(|(smallest, _)| area < *smallest) {
                    best = Some((area, thumbnail));
                }
            }
            best.map(|(_, thumbnail)| thumbnail)
        }
    }

    /// Decodes the picture of a handle to 8-bit RGB, or RGBA where it has alpha.
    unsafe fn decode_handle(&self, handle: &Owned<Handle>) -> std::result::Result<DynamicImage, Failure> {
        // SAFETY: a live handle; the image is released by its guard after its rows are copied.
        unsafe {
            let alpha = (self.handle_has_alpha)(handle.0) != 0;
            let chroma = if alpha { CHROMA_INTERLEAVED_RGBA } else { CHROMA_INTERLEAVED_RGB };
            let mut image = ptr::null_mut();
            // No decoding options: libheif's defaults apply the rotation and mirroring, and
            // bring 10- and 12-bit pictures down to 8 bits.
            check((self.decode_image)(handle.0, &mut image, COLORSPACE_RGB, chroma, ptr::null()))?;
            let image = Owned(image, self.image_release);
            let (width, height) =
                ((self.image_width)(image.0, CHANNEL_INTERLEAVED), (self.image_height)(image.0, CHANNEL_INTERLEAVED));
            let mut stride = 0;
            let plane = (self.plane_readonly)(image.0, CHANNEL_INTERLEAVED, &mut stride);
            let channels = if alpha { 4 } else { 3 };
            if plane.is_null() || width <= 0 || height <= 0 || stride < width * channels {
                return Err(Failure::Unreadable("libheif decoded it to no picture".into()));
            }
            let (width, height, stride) = (width as usize, height as usize, stride as usize);
            let row_len = width * channels as usize;
            let mut pixels = Vec::with_capacity(row_len * height);
            for row in 0..height {
                pixels.extend_from_slice(std::slice::from_raw_parts(plane.add(row * stride), row_len));
            }
            let (w, h) = (width as u32, height as u32);
            let picture = if alpha {
                RgbaImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgba8)
            } else {
                RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
            };
            picture.ok_or_else(|| Failure::Unreadable("libheif's picture has the wrong size".into()))
        }
    }
}

/// A decoded picture and the upright size of the picture it stands for (a thumbnail is smaller).
pub struct Decoded {
    pub picture: DynamicImage,
    pub size: (u32, u32),
}

/// A libheif error as a failure: a missing codec, or a file it cannot read.
fn check(error: HeifError) -> std::result::Result<(), Failure> {
    if error.code == 0 {
        return Ok(());
    }
    let no_codec = error.code == ERROR_PLUGIN_LOADING
        || (error.code == ERROR_UNSUPPORTED_FEATURE && error.subcode == SUBERROR_UNSUPPORTED_CODEC);
    Err(match no_codec {
        true => Failure::NoCodec(message(&error)),
        false => Failure::Unreadable(format!("libheif cannot read it: {}", message(&error))),
    })
}

/// A libheif object, released when dropped.
struct Owned<T>(*mut T, unsafe extern "C" fn(*const T));

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from libheif with this as its release function.
            unsafe { (self.1)(self.0) }
        }
    }
}

fn message(error: &HeifError) -> String {
    if error.message.is_null() {
        return format!("error {}.{}", error.code, error.subcode);
    }
    // SAFETY: libheif's error messages are static or context-owned NUL-terminated strings, read
    // before the context is freed.
    unsafe { CStr::from_ptr(error.message).to_string_lossy().into_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_read_from_the_major_and_compatible_brands() {
        let ftyp = |major: &[u8; 4], compatible: &[&[u8; 4]]| {
            let mut bytes = ((16 + 4 * compatible.len()) as u32).to_be_bytes().to_vec();
            bytes.extend_from_slice(b"ftyp");
            bytes.extend_from_slice(major);
            bytes.extend_from_slice(&[0; 4]);
            compatible.iter().for_each(|brand| bytes.extend_from_slice(*brand));
            bytes.extend_from_slice(b"\0\0\0\x08meta");
            bytes
        };
        assert_eq!(format(&ftyp(b"heic", &[b"mif1", b"heic"])), Some("heic"));
        // libavif writes `avif` as the major brand; other encoders put it among the compatible.
        assert_eq!(format(&ftyp(b"avif", &[b"mif1", b"miaf"])), Some("avif"));
        assert_eq!(format(&ftyp(b"mif1", &[b"avif", b"miaf"])), Some("avif"));
        assert_eq!(format(&ftyp(b"mif1", &[b"heic"])), Some("heic"));
        assert_eq!(format(&ftyp(b"mif1", &[b"miaf"])), Some("heif"));
        // Not HEIF: an MP4 video, a CR3 (both ISO-BMFF), and no ftyp at all.
        assert_eq!(format(&ftyp(b"isom", &[b"isom", b"mp42"])), None);
        assert_eq!(format(&ftyp(b"crx ", &[b"crx ", b"isom"])), None);
        assert_eq!(format(b"\xFF\xD8\xFF\xE0 not a box at all"), None);
    }
}
