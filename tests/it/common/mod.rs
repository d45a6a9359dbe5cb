//! Fixtures and helpers shared by the integration tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Deserialize;

pub mod cli;
pub mod clip_like;
pub mod http;
pub mod hub;
pub mod npy;
pub mod parquet;
pub mod server;

/// The Hugging Face CLIP checkpoints: the default family, used by every test that needs a model.
pub const MODELS: [&str; 2] = ["tiny-clip-b32-quickgelu", "tiny-clip-p14-gelu"];

/// Every family's checkpoints, each proven equal to its reference implementation.
pub const PARITY_MODELS: [&str; 28] = [
    "tiny-clip-b32-quickgelu",
    "tiny-clip-p14-gelu",
    "tiny-siglip-sp",
    "tiny-siglip2-gemma",
    "tiny-siglip2-naflex",
    "tiny-siglip2-naflex-p8",
    "tiny-openclip-b32-quickgelu",
    "tiny-openclip-p16-gelu",
    "tiny-coca-b32",
    "tiny-coca-p16-gelu",
    "tiny-openclip-xlmr",
    "tiny-openclip-nllb",
    "tiny-openclip-bert",
    "tiny-chinese-clip",
    "tiny-openclip-siglip",
    "tiny-openclip-siglip2",
    "tiny-openclip-nllb-siglip",
    "tiny-metaclip2",
    "tiny-openclip-rn-quickgelu",
    "tiny-openclip-rn-gelu",
    "tiny-openclip-eva02",
    "tiny-openclip-eva02-e",
    "tiny-mclip",
    "tiny-mclip-bert",
    "tiny-openclip-clipa",
    "tiny-openclip-convnext",
    "tiny-openclip-convnext-mlp",
    "tiny-openclip-mobileclip-b",
];

/// The M-CLIP fixtures, each with the CLIP fixture whose image tower it pairs with.
pub const MCLIP_PAIRS: [(&str, &str); 2] =
    [("tiny-mclip", "tiny-clip-b32-quickgelu"), ("tiny-mclip-bert", "tiny-clip-p14-gelu")];

/// What `--model` takes for a fixture checkpoint: its folder, or for a bare OpenCLIP state dict
/// (a folder with `arch.json` beside the `.pt`) the file with its architecture after `#`, or
/// for the M-CLIP its folder with its image model's after `#`.
pub fn model_arg(name: &str) -> String {
    let dir = model_dir(name);
    if let Some((_, image_model)) = MCLIP_PAIRS.iter().find(|(mclip, _)| *mclip == name) {
        return format!("{}#{}", dir.display(), model_dir(image_model).display());
    }
    let arch = dir.join("arch.json");
    if arch.is_file() {
        format!("{}#{}", dir.join(format!("{name}.pt")).display(), arch.display())
    } else {
        dir.display().to_string()
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn image_path(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

/// `count` distinct small photos (noise patterns, so no two share content).
pub fn noise_photos(dir: &Path, count: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|i| {
            let mut state = 0x9E3779B97F4A7C15u64.wrapping_mul(i as u64 + 1);
            let img = image::RgbImage::from_fn(120, 90, |_, _| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
            });
            let path = dir.join(format!("photo_{i:04}.png"));
            img.save(&path).unwrap();
            path
        })
        .collect()
}

/// What `scripts/make_test_model.py` computed with the reference library for one checkpoint.
#[derive(Deserialize)]
pub struct Reference {
    pub dim: usize,
    /// The text tower's context (the CLIP references predate the field: 77).
    #[serde(default = "clip_context")]
    pub max_length: usize,
    /// SigLIP: `sigmoid(logits_per_text)` of `SiglipModel`, by text then picture.
    #[serde(default)]
    pub probs: HashMap<String, HashMap<String, f32>>,
    pub texts: Vec<String>,
    pub token_ids: HashMap<String, Vec<u32>>,
    pub image_embeds: HashMap<String, Vec<f32>>,
    pub text_embeds: HashMap<String, Vec<f32>>,
}

fn clip_context() -> usize {
    77
}

pub fn reference(model: &str) -> Reference {
    let path = fixtures().join("reference").join(format!("{model}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `CLIPImageProcessor`'s pixel_values for every fixture image, (3, H, W) each.
pub fn reference_pixels(model: &str) -> HashMap<String, candle_core::Tensor> {
    let path = fixtures().join("reference").join(format!("{model}_pixels.safetensors"));
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "embedding lengths differ");
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Every device this build and machine can run the tests on: the CPU always, plus the GPU of
/// the `cuda` / `metal` feature when one is present. Tests loop over it, so one test body
/// proves parity everywhere.
pub fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
        devices.push(Device::new_cuda(0).expect("CUDA reported available"));
    }
    if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
        devices.push(Device::new_metal(0).expect("Metal reported available"));
    }
    devices
}

/// The PostgreSQL server the tests may use (`scripts/test.sh` starts one and sets this to its
/// admin URL, postgres://postgres@127.0.0.1:PORT/postgres).
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("IMGSEARCH_TEST_POSTGRES").ok().filter(|url| !url.is_empty())
}

/// Whether the shared suites run on the PostgreSQL backend (`IMGSEARCH_TEST_BACKEND=postgres`,
/// as `scripts/test.sh` runs them a second time) instead of the embedded data folder.
pub fn on_postgres() -> bool {
    match std::env::var("IMGSEARCH_TEST_BACKEND").as_deref() {
        Ok("postgres") => {
            assert!(postgres_admin_url().is_some(), "IMGSEARCH_TEST_BACKEND=postgres needs IMGSEARCH_TEST_POSTGRES");
            true
        }
        Ok("embedded") | Err(_) => false,
        Ok(other) => panic!("IMGSEARCH_TEST_BACKEND is 'embedded' or 'postgres', not {other:?}"),
    }
}

/// A database of its own on the test PostgreSQL server, created on first use, for the library
/// whose local folder is `data`.
pub fn database_for(data: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let admin = postgres_admin_url().expect("run the tests with scripts/test.sh: it starts PostgreSQL");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut hasher);
    let name = format!("library_{:016x}", hasher.finish());
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to the test PostgreSQL");
    match client.batch_execute(&format!("CREATE DATABASE {name}")) {
        Ok(()) => {}
        Err(e) if e.code() == Some(&postgres::error::SqlState::DUPLICATE_DATABASE) => {}
        Err(e) => panic!("cannot create the test database {name}: {e}"),
    }
    let (server, _) = admin.rsplit_once('/').expect("a URL with a database");
    format!("{server}/{name}")
}

/// The arguments that point `imgsearch` at the library kept in `data`: the data folder, or on
/// the PostgreSQL run, the library's own database (with `data` for local caches).
pub fn library_args(data: &Path) -> Vec<std::ffi::OsString> {
    let mut args = vec!["--data-dir".into(), data.as_os_str().to_owned()];
    if on_postgres() {
        args.extend(["--store".into(), database_for(data).into()]);
    }
    args
}

/// Copies a JPEG (a fixture's name, or a path) with EXIF ASCII fields (tag, text) inserted.
pub fn jpeg_with_exif(source: &str, fields: &[(exif::Tag, &str)], dest: &Path) {
    let fields: Vec<exif::Field> = fields
        .iter()
        .map(|(tag, text)| exif::Field {
            tag: *tag,
            ifd_num: exif::In::PRIMARY,
            value: exif::Value::Ascii(vec![text.as_bytes().to_vec()]),
        })
        .collect();
    jpeg_with_exif_fields(source, &fields, dest);
}

/// Copies a JPEG (a fixture's name, or a path) with an EXIF GPS position (degrees, north and
/// east positive), written as cameras write it: degrees, minutes and seconds, and N/S, E/W.
pub fn jpeg_with_gps(source: &str, (latitude, longitude): (f64, f64), dest: &Path) {
    let field = |tag, value| exif::Field { tag, ifd_num: exif::In::PRIMARY, value };
    let dms = |degrees: f64| {
        let degrees = degrees.abs();
        let minutes = degrees.fract() * 60.0;
        let seconds = (minutes.fract() * 60.0 * 10_000.0).round() as u32;
        let rational = |num, denom| exif::Rational { num, denom };
        exif::Value::Rational(vec![rational(degrees as u32, 1), rational(minutes as u32, 1), rational(seconds, 10_000)])
    };
    let reference = |r: &str| exif::Value::Ascii(vec![r.as_bytes().to_vec()]);
    let fields = [
        field(exif::Tag::GPSLatitudeRef, reference(if latitude < 0.0 { "S" } else { "N" })),
        field(exif::Tag::GPSLatitude, dms(latitude)),
        field(exif::Tag::GPSLongitudeRef, reference(if longitude < 0.0 { "W" } else { "E" })),
        field(exif::Tag::GPSLongitude, dms(longitude)),
    ];
    jpeg_with_exif_fields(source, &fields, dest);
}

pub fn jpeg_with_exif_fields(source: &str, fields: &[exif::Field], dest: &Path) {
    use exif::experimental::Writer;
    let mut writer = Writer::new();
    for field in fields {
        writer.push_field(field);
    }
    let mut tiff = std::io::Cursor::new(Vec::new());
    writer.write(&mut tiff, false).unwrap();
    let payload = [b"Exif\0\0".as_slice(), tiff.get_ref()].concat();
    jpeg_with_segment(source, 0xE1, &payload, dest);
}

/// Copies a JPEG (a fixture's name, or a path) with one more segment (`marker`: 0xE1 for APP1,
/// EXIF's or XMP's; 0xED for APP13, Photoshop's IPTC) right after its start.
pub fn jpeg_with_segment(source: &str, marker: u8, payload: &[u8], dest: &Path) {
    let source = if Path::new(source).is_file() { PathBuf::from(source) } else { image_path(source) };
    let jpeg = std::fs::read(source).unwrap();
    let mut out = jpeg[..2].to_vec(); // SOI, then the segment
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&u16::try_from(payload.len() + 2).expect("a segment holds 64 KB").to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    std::fs::write(dest, out).unwrap();
}

/// Runs one of tests/browser/'s scripts with node; it fails the test with its output.
pub fn browser_script(script: &str, args: &[&str]) {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/test.sh (or `npm ci --prefix tests/browser`)"
    );
    let out = std::process::Command::new("node")
        .current_dir(&browser_dir)
        .arg(script)
        .args(args)
        .output()
        .expect("node is needed for the browser test: run scripts/test.sh");
    assert!(
        out.status.success(),
        "browser test {script} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ffmpeg, quiet, overwriting its output: the reference video decoder, and the maker of test
/// videos (scripts/test.sh installs it).
pub fn ffmpeg() -> std::process::Command {
    let mut command = std::process::Command::new("ffmpeg");
    command.args(["-nostdin", "-v", "error", "-y"]);
    command
}

/// Runs an ffmpeg command, which must succeed.
pub fn succeeds(command: &mut std::process::Command) {
    let status = command.status().expect("ffmpeg runs (scripts/test.sh installs it)");
    assert!(status.success(), "{command:?}");
}

/// One PNG chunk: its data's length, its type, the data and their CRC.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
}

/// `png` with `chunk` right after its header (IHDR), where metadata chunks go.
pub fn png_with_chunk_after_header(png: &[u8], chunk: &[u8]) -> Vec<u8> {
    let header_end = 8 + 4 + 4 + 13 + 4; // signature, then IHDR's length, type, data and CRC
    assert_eq!(&png[12..16], b"IHDR", "a PNG starts with its header");
    [&png[..header_end], chunk, &png[header_end..]].concat()
}

/// The output of `command` (stdout and stderr piped), which must end within `limit`: one that
/// runs on is killed and the test fails, saying it `hangs` (a test of a hang must not hang).
pub fn output_within(
    command: &mut std::process::Command,
    limit: std::time::Duration,
    hangs: &str,
) -> std::process::Output {
    use std::process::Stdio;
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{hangs}: still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}
