//! Videos, as moments: a frame every few seconds, each embedded and searched like a picture, so
//! that a query finds the moment inside a video and not only the file.
//!
//! Frames come from the `ffmpeg` program (what Immich, PhotoPrism and Jellyfin run), started per
//! video when the first one comes: no well-kept Rust crate decodes H.264, HEVC, VP9 and AV1, and
//! linking FFmpeg's libraries would tie the binary to their versions. `IMGSEARCH_FFMPEG` names the
//! program; `ffprobe` is looked for beside it.
//!
//! A moment is stored as its own record under the video's path with a media-fragment suffix
//! (`clip.mp4#t=12.5`, the syntax browsers seek by), except the opening moment, which is stored
//! under the video's own path: the record the next run compares the file's size and date with.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use image::RgbImage;

use super::decode::MinSize;
use crate::error::{Error, Result};
use crate::store::catalog::PhotoFacts;

/// Extensions of the video files indexed (`ts` is left out: TypeScript sources share it).
pub const EXTENSIONS: &[&str] =
    &["mp4", "m4v", "mov", "webm", "mkv", "avi", "3gp", "mts", "m2ts", "mpg", "mpeg", "wmv", "ogv"];

/// The suffix that marks a moment's path: `clip.mp4#t=12.5` (W3C Media Fragments).
const MOMENT_MARK: &[u8] = b"#t=";

/// Moments are at least this far apart, seconds: scenes in home videos last longer, and a query
/// lands within a few seconds of what it looks for.
const MIN_INTERVAL: f64 = 2.0;
/// A long video gets at most this many moments (its interval widens): a film does not outweigh a
/// thousand photos in the index.
const MAX_MOMENTS: f64 = 150.0;

/// Containers ffmpeg may open as a video here: a file named `.mp4` that is really a playlist
/// (HLS, concat) could otherwise make ffmpeg read other files or URLs.
const FORMATS: &str = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,mpegvideo,asf,ogg,flv";

/// Whether a file's name says it is a video.
pub fn has_video_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether a record's format (the file's extension, lower case) is a video's.
pub fn is_video_format(format: &str) -> bool {
    EXTENSIONS.contains(&format)
}

/// The hash recorded for the moment `seconds` into a video whose file has `video_hash`: the
/// video's with the moment (two moments of one video are not the same picture; the opening
/// moment is the file itself).
pub fn moment_hash(video_hash: &str, seconds: f64) -> String {
    match seconds > 0.0 {
        true => format!("{video_hash}{}{seconds}", std::str::from_utf8(MOMENT_MARK).expect("ASCII")),
        false => video_hash.to_owned(),
    }
}

/// The hash of the file a record's hash was made from: a moment's video's (see [`moment_hash`]),
/// any other record's own (hex, which never holds the mark).
pub fn file_hash(record_hash: &str) -> &str {
    let mark = std::str::from_utf8(MOMENT_MARK).expect("ASCII");
    record_hash.split_once(mark).map_or(record_hash, |(file, _)| file)
}

/// The stored path of the moment `seconds` into the video at `file` (the opening moment is the
/// file itself).
pub fn moment_path(file: &[u8], seconds: f64) -> Vec<u8> {
    if seconds <= 0.0 {
        return file.to_vec();
    }
    let mut path = file.to_vec();
    path.extend_from_slice(MOMENT_MARK);
    path.extend_from_slice(format_seconds(seconds).as_bytes());
    path
}

/// A moment's path → the video's path and the seconds into it; `None` for any other path.
pub fn split_moment(path: &[u8]) -> Option<(&[u8], f64)> {
    let at = path.windows(MOMENT_MARK.len()).rposition(|w| w == MOMENT_MARK)?;
    let seconds = std::str::from_utf8(&path[at + MOMENT_MARK.len()..]).ok()?;
    if seconds.is_empty() || !seconds.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((&path[..at], seconds.parse().ok()?))
}

/// A record's later moment of a video (one of `format`, at `path`): the video's path and the
/// seconds into it. `None` for a video's opening moment (stored at its own path) and for every
/// other picture, whatever its name.
pub fn later_moment<'a>(format: &str, path: &'a [u8]) -> Option<(&'a [u8], f64)> {
    is_video_format(format).then(|| split_moment(path)).flatten()
}

/// Seconds as a moment's path writes them: at most millisecond precision, no trailing zeros.
fn format_seconds(seconds: f64) -> String {
    let text = format!("{seconds:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// ffmpeg and ffprobe, found once.
struct Tools {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
    version: String,
}

impl Tools {
    fn get() -> std::result::Result<&'static Tools, &'static String> {
        static TOOLS: OnceLock<std::result::Result<Tools, String>> = OnceLock::new();
        TOOLS.get_or_init(Tools::find).as_ref()
    }

    fn find() -> std::result::Result<Tools, String> {
        let ffmpeg = std::env::var_os("IMGSEARCH_FFMPEG").map_or_else(|| PathBuf::from("ffmpeg"), PathBuf::from);
        let ffprobe = match ffmpeg.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(folder) => folder.join(format!("ffprobe{}", std::env::consts::EXE_SUFFIX)),
            None => PathBuf::from("ffprobe"),
        };
        let how_to = "install ffmpeg (Debian/Ubuntu: apt install ffmpeg; macOS: brew install ffmpeg), or set \
                      IMGSEARCH_FFMPEG to the ffmpeg program (ffprobe beside it)";
        let version = |program: &Path| {
            Command::new(program)
                .arg("-version")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string())
        };
        let Some(banner) = version(&ffmpeg) else {
            return Err(format!("videos need ffmpeg, and {} cannot be run: {how_to}", ffmpeg.display()));
        };
        if version(&ffprobe).is_none() {
            return Err(format!(
                "videos need ffprobe beside ffmpeg, and {} cannot be run: {how_to}",
                ffprobe.display()
            ));
        }
        // "ffmpeg version 5.1.9-0+deb12u1 Copyright ..." → "5.1.9-0+deb12u1"
        let version = banner.split_whitespace().nth(2).unwrap_or("(unknown version)").to_string();
        Ok(Tools { ffmpeg, ffprobe, version })
    }

    /// The arguments that open `path` as a local video and nothing else.
    fn input(path: &Path) -> [OsString; 6] {
        // `file:` keeps a name with a colon in it from being read as a protocol.
        let mut url = OsString::from("file:");
        url.push(path.as_os_str());
        ["-protocol_whitelist".into(), "file".into(), "-format_whitelist".into(), FORMATS.into(), "-i".into(), url]
    }
}

/// Which ffmpeg this process reads videos with (`stats` shows it), or why it has none.
pub fn decoder() -> std::result::Result<String, String> {
    Tools::get().map(|tools| format!("ffmpeg {} ({})", tools.version, tools.ffmpeg.display())).map_err(Clone::clone)
}

fn tools(path: &Path) -> Result<&'static Tools> {
    Tools::get().map_err(|why| Error::NoDecoder {
        path: path.to_owned(),
        reason: format!("{why}, then run `imgsearch index` again"),
    })
}

/// What ffprobe tells about a video file.
#[derive(Debug, Clone)]
pub struct VideoInfo {
    /// Frame size, upright (ffmpeg turns frames by the rotation the file asks for).
    pub width: u32,
    pub height: u32,
    /// The length the container declares; 0 where it declares none.
    pub seconds: f64,
    pub facts: PhotoFacts,
}

/// Reads a video's size, length, and what its container says about when, where and with what it
/// was filmed. `Ok(None)`: the file has no video stream (a sound recording).
pub fn probe(path: &Path) -> Result<Option<VideoInfo>> {
    let tools = tools(path)?;
    let output = Command::new(&tools.ffprobe)
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .args(Tools::input(path))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Io { path: tools.ffprobe.clone(), source })?;
    let unreadable = |reason: String| Error::Decode { path: path.to_owned(), reason };
    if !output.status.success() {
        return Err(unreadable(format!("not a readable video: {}", last_line(&output.stderr))));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| unreadable(format!("ffprobe's answer: {e}")))?;
    let Some(stream) = json["streams"].as_array().into_iter().flatten().find(|s| {
        // A cover picture attached to a sound file is a "video" stream of one frame.
        s["codec_type"] == "video" && s["disposition"]["attached_pic"].as_i64() != Some(1)
    }) else {
        return Ok(None);
    };
    let side = |key: &str| stream[key].as_u64().filter(|&v| v > 0 && v <= u32::MAX as u64).map(|v| v as u32);
    let (Some(width), Some(height)) = (side("width"), side("height")) else {
        return Err(unreadable("the video stream has no frame size".into()));
    };
    let rotation = stream["side_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|data| data["rotation"].as_f64())
        .or_else(|| stream["tags"]["rotate"].as_str().and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    let quarter_turn = (rotation.round() as i64).rem_euclid(180) == 90;
    let number = |value: &serde_json::Value| value.as_str().and_then(|s| s.parse::<f64>().ok());
    let seconds = number(&json["format"]["duration"]).or_else(|| number(&stream["duration"])).unwrap_or(0.0);
    let (width, height) = if quarter_turn { (height, width) } else { (width, height) };
    Ok(Some(VideoInfo { width, height, seconds: seconds.max(0.0), facts: container_facts(&json["format"]["tags"]) }))
}

/// When, where, with what and what of: the tags phones and cameras write into MP4/QuickTime files.
fn container_facts(tags: &serde_json::Value) -> PhotoFacts {
    let tag =
        |names: &[&str]| names.iter().find_map(|name| tags[*name].as_str()).map(str::trim).filter(|s| !s.is_empty());
    let captions = super::captions::from_tags(
        tag(&["com.apple.quicktime.title", "title"]),
        tag(&["com.apple.quicktime.description", "description", "comment"]),
        tag(&["com.apple.quicktime.keywords", "keywords"]),
    );
    PhotoFacts {
        taken: tag(&["com.apple.quicktime.creationdate", "creation_time"]).and_then(parse_iso_datetime),
        camera_make: tag(&["com.apple.quicktime.make", "make", "com.android.manufacturer"]).map(str::to_string),
        camera_model: tag(&["com.apple.quicktime.model", "model", "com.android.model"]).map(str::to_string),
        gps: tag(&["com.apple.quicktime.location.ISO6709", "location"]).and_then(parse_iso6709),
        title: captions.title,
        description: captions.description,
        keywords: captions.keywords,
        rating: None,
    }
}

/// "2024-07-14T18:03:11.000000Z" or "2024-07-14T20:03:11+0200" → Unix seconds of the local time
/// (EXIF dates are local times taken as UTC, and videos are dated the same way where they can
/// be). A date with no offset, or "Z", is taken as it is.
fn parse_iso_datetime(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', ' '])?;
    let mut parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    let clock: String = time.chars().take_while(|c| c.is_ascii_digit() || *c == ':').collect();
    let mut hms = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute) = (hms.next()??, hms.next()??);
    let second = hms.next().flatten().unwrap_or(0);
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second < 61;
    let days = super::exif::days_from_civil(year, month, day);
    valid.then_some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// "+38.7223-009.1393+012.000/" (ISO 6709, what phones write) → (latitude, longitude).
fn parse_iso6709(text: &str) -> Option<(f64, f64)> {
    let text = text.trim_end_matches('/');
    let signs: Vec<usize> = text.match_indices(['+', '-']).map(|(i, _)| i).collect();
    let (&lat_at, &lon_at) = (signs.first()?, signs.get(1)?);
    let end = signs.get(2).copied().unwrap_or(text.len());
    let (latitude, longitude) = (text[lat_at..lon_at].parse().ok()?, text[lon_at..end].parse().ok()?);
    crate::geo::is_valid(latitude, longitude).then_some((latitude, longitude))
}

/// How far apart a video's moments are: [`MIN_INTERVAL`], or wider for a long video.
pub fn moment_interval(seconds: f64) -> f64 {
    MIN_INTERVAL.max(seconds / MAX_MOMENTS)
}

/// The size frames are scaled to before a model's preprocessing or a rendition: the smallest that
/// still meets `min` (never larger than the video).
fn scaled_size((width, height): (u32, u32), min: Option<MinSize>) -> (u32, u32) {
    let scale = match (min, min.and_then(|min| min.covering((width, height)))) {
        (Some(MinSize::LongSide(side)), _) => side as f64 / width.max(height) as f64,
        (_, Some((w, h))) => (w as f64 / width as f64).max(h as f64 / height as f64),
        (_, None) => 1.0,
    };
    if scale >= 1.0 {
        return (width, height);
    }
    let side = |v: u32| ((v as f64 * scale).ceil() as u32).max(1);
    (side(width), side(height))
}

/// The moments of a video: a frame every [`moment_interval`] seconds (the last key frame at or
/// before that time: only key frames are decoded, 10–30× less work), scaled to meet `min`; a frame
/// the same as the one before (a key frame that covers several moments) is left out.
pub fn moments(path: &Path, info: &VideoInfo, min: Option<MinSize>) -> Result<Moments> {
    let interval = moment_interval(info.seconds);
    let (width, height) = scaled_size((info.width, info.height), min);
    // `round=up`: the frame for time t is the last one at or before t, not one after it.
    let filter = format!("fps=fps=1/{interval:.6}:round=up,scale={width}:{height}:flags=area");
    let frames = Frames::start(path, &["-skip_frame", "nokey"], &filter, (width, height), None)?;
    // A video whose container declares no length (a browser's recording) is read to its end.
    let limit = if info.seconds > 0.0 { (info.seconds / interval).floor() as usize + 1 } else { usize::MAX };
    Ok(Moments { frames, interval, seconds: info.seconds, index: 0, limit, previous: None })
}

/// The frame of the moment `seconds` into a video of this `upright` size, scaled to meet `min` (a
/// rendition's): the key frame at or before that time, the one [`moments`] embedded, and found
/// without decoding the frames after it.
pub fn frame_at(path: &Path, upright: (u32, u32), seconds: f64, min: Option<MinSize>) -> Result<RgbImage> {
    let (width, height) = scaled_size(upright, min);
    let filter = format!("scale={width}:{height}:flags=area");
    let key_frame = ["-skip_frame", "nokey", "-noaccurate_seek"];
    let mut frames = Frames::start(path, &key_frame, &filter, (width, height), Some(seconds))?;
    match frames.next_frame()? {
        Some(frame) => Ok(frame),
        None => Err(Error::Decode { path: path.to_owned(), reason: format!("no frame at {seconds} s") }),
    }
}

/// An ffmpeg process writing raw RGB frames of one size to a pipe.
struct Frames {
    child: Child,
    path: PathBuf,
    size: (u32, u32),
    /// ffmpeg's last complaints, read on their own thread so that a chatty decode never blocks.
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    /// What ffmpeg complained of, once it has ended.
    complaints: Vec<u8>,
}

impl Frames {
    fn start(path: &Path, before_input: &[&str], filter: &str, size: (u32, u32), seek: Option<f64>) -> Result<Frames> {
        let tools = tools(path)?;
        let mut command = Command::new(&tools.ffmpeg);
        command.args(["-nostdin", "-hide_banner", "-loglevel", "error"]).args(before_input);
        if let Some(seconds) = seek {
            command.args(["-ss", &format!("{seconds:.3}")]);
        }
        command.args(Tools::input(path));
        if seek.is_some() {
            command.args(["-frames:v", "1"]);
        }
        let mut child = command
            .args([
                "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", filter, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Io { path: tools.ffmpeg.clone(), source })?;
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                kept.extend_from_slice(&chunk[..n]);
                let excess = kept.len().saturating_sub(4096);
                kept.drain(..excess);
            }
            kept
        });
        Ok(Frames { child, path: path.to_owned(), size, stderr: Some(stderr), complaints: Vec::new() })
    }

    /// The next frame; `None` at the end of the video. A decode that fails before its end is an
    /// error with ffmpeg's reason.
    fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        let (width, height) = self.size;
        let mut pixels = vec![0u8; width as usize * height as usize * 3];
        let stdout = self.child.stdout.as_mut().expect("piped");
        let mut filled = 0;
        while filled < pixels.len() {
            match stdout.read(&mut pixels[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(Error::Io { path: self.path.clone(), source }),
            }
        }
        if filled == pixels.len() {
            return Ok(RgbImage::from_raw(width, height, pixels));
        }
        let status = self.child.wait().map_err(|source| Error::Io { path: self.path.clone(), source })?;
        if let Some(stderr) = self.stderr.take() {
            self.complaints = stderr.join().unwrap_or_default();
        }
        if status.success() && filled == 0 {
            return Ok(None);
        }
        let why = last_line(&self.complaints);
        Err(Error::Decode { path: self.path.clone(), reason: format!("the video cannot be decoded: {why}") })
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        // A reader that stops early (an aborted run) must not leave ffmpeg running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moments of one video, in order: (seconds into it, frame).
pub struct Moments {
    frames: Frames,
    interval: f64,
    /// How long the container says the video is.
    seconds: f64,
    index: usize,
    limit: usize,
    previous: Option<RgbImage>,
}

impl Iterator for Moments {
    type Item = Result<(f64, RgbImage)>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.index < self.limit {
            let frame = match self.frames.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return self.cut_short().map(Err),
                Err(e) => return Some(Err(e)),
            };
            let seconds = self.index as f64 * self.interval;
            self.index += 1;
            if self.previous.as_ref().is_some_and(|previous| previous.as_raw() == frame.as_raw()) {
                continue;
            }
            self.previous = Some(frame.clone());
            return Some(Ok((seconds, frame)));
        }
        None
    }
}

impl Moments {
    /// At the end of the frames: a video that ffmpeg complained of and that stopped well before
    /// the length its container declares is cut short or damaged (ffmpeg itself ends without
    /// failing on a file cut in half), not a video of that length.
    fn cut_short(&self) -> Option<Error> {
        // The last moment read, and the slack a key frame interval of up to 2 s leaves.
        let reached = self.index.saturating_sub(1) as f64 * self.interval;
        let short = reached + self.interval + 2.0 < self.seconds;
        (short && !self.frames.complaints.is_empty()).then(|| Error::Decode {
            path: self.frames.path.clone(),
            reason: format!(
                "the video stops at {reached:.0} s of the {:.0} s its container declares (cut short or damaged): {}",
                self.seconds,
                last_line(&self.frames.complaints)
            ),
        })
    }
}

/// The last line a tool wrote to stderr, for an error message.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no reason given").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moment_paths_round_trip_and_only_moments_parse() {
        assert_eq!(moment_path(b"/v/clip.mp4", 0.0), b"/v/clip.mp4");
        assert_eq!(moment_path(b"/v/clip.mp4", 12.5), b"/v/clip.mp4#t=12.5");
        assert_eq!(moment_path(b"/v/clip.mp4", 4.0), b"/v/clip.mp4#t=4");
        assert_eq!(split_moment(b"/v/clip.mp4#t=12.5"), Some((&b"/v/clip.mp4"[..], 12.5)));
        assert_eq!((moment_hash("ab12", 12.5).as_str(), moment_hash("ab12", 0.0).as_str()), ("ab12#t=12.5", "ab12"));
        assert_eq!((file_hash("ab12#t=12.5"), file_hash("ab12")), ("ab12", "ab12"));
        assert_eq!(split_moment(b"/v/a#t=1/clip.mp4#t=2"), Some((&b"/v/a#t=1/clip.mp4"[..], 2.0)));
        assert_eq!(split_moment(b"/v/clip.mp4"), None);
        assert_eq!(split_moment(b"/v/clip#t=.mp4"), None);
        assert_eq!(split_moment(b"/v/clip.mp4#t="), None);
    }

    #[test]
    fn phone_tags_give_date_place_and_camera() {
        let tags = serde_json::json!({
            "creation_time": "2024-07-14T18:03:11.000000Z",
            "com.apple.quicktime.location.ISO6709": "+38.7223-009.1393+012.000/",
            "com.apple.quicktime.make": "Apple",
            "com.apple.quicktime.model": "iPhone 15",
        });
        let facts = container_facts(&tags);
        assert_eq!(facts.taken.map(crate::search::iso_date).as_deref(), Some("2024-07-14T18:03:11"));
        assert_eq!(facts.gps, Some((38.7223, -9.1393)));
        assert_eq!(facts.camera().as_deref(), Some("Apple iPhone 15"));
        assert_eq!(parse_iso6709("+91.0000+000.0000/"), None);
        assert_eq!(parse_iso_datetime("2024-13-01T00:00:00Z"), None);
    }

    #[test]
    fn frames_are_scaled_to_cover_the_model_and_never_up() {
        assert_eq!(scaled_size((1920, 1080), Some(MinSize::Covering(224, 224))), (399, 224));
        assert_eq!(scaled_size((1080, 1920), Some(MinSize::LongSide(320))), (180, 320));
        assert_eq!(scaled_size((160, 120), Some(MinSize::Covering(224, 224))), (160, 120));
        // SigLIP 2 NaFlex: a 1920 × 1080 frame makes a 21 × 12 grid of 16-pixel patches (336 ×
        // 192 pixels), and is kept a patch larger on its tighter side.
        let naflex = MinSize::PatchGrid(crate::model::config::PatchBudget { patch_size: 16, max_patches: 256 });
        assert_eq!(scaled_size((1920, 1080), Some(naflex)), (370, 208));
        assert_eq!(moment_interval(30.0), 2.0);
        assert_eq!(moment_interval(3600.0), 24.0);
    }
}
