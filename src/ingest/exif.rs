//! Facts from EXIF: when, with which camera, where (or a GeoTIFF's place), and which way up.

use std::io::Cursor;
use std::path::Path;

use exif::{Context, In, Tag, Value};
use image::metadata::Orientation;

use super::raw;

use crate::store::catalog::PhotoFacts;

/// A picture's EXIF: one TIFF structure with its sub-IFDs (most formats), or, in Canon's CR3,
/// one box per IFD: `CMT1` the main IFD (camera, orientation), `CMT2` the EXIF IFD (date), `CMT4`
/// the GPS IFD, each a TIFF structure of its own.
pub enum Metadata {
    Tiff(exif::Exif),
    Canon(Box<CanonBoxes>),
}

pub struct CanonBoxes {
    main: Option<exif::Exif>,
    exif: Option<exif::Exif>,
    gps: Option<exif::Exif>,
}

impl Metadata {
    pub(super) fn field(&self, tag: Tag) -> Option<&exif::Field> {
        match self {
            Metadata::Tiff(exif) => exif.get_field(tag, In::PRIMARY),
            Metadata::Canon(boxes) => {
                let CanonBoxes { main, exif, gps } = boxes.as_ref();
                // Each box reads as a main IFD, so its fields carry the main IFD's context:
                // match them by number within the box that holds the tag's IFD.
                let of_ifd = match tag.0 {
                    Context::Tiff => main,
                    Context::Exif => exif,
                    Context::Gps => gps,
                    _ => &None,
                };
                of_ifd.as_ref()?.fields().find(|field| field.tag.1 == tag.1 && field.ifd_num == In::PRIMARY)
            }
        }
    }
}

/// The EXIF of a picture file (named `path`): from its container (JPEG, TIFF and the RAW formats
/// built on it, PNG, WebP, HEIF); for Olympus ORF and Panasonic RW2 from their TIFF-like header;
/// for Canon CR3 from its boxes; for other RAW files (Fujifilm RAF) from the largest JPEG preview
/// inside that has EXIF.
pub fn read_exif(bytes: &[u8], path: &Path) -> Option<Metadata> {
    let reader = exif::Reader::new();
    if let Ok(exif) = reader.read_from_container(&mut Cursor::new(bytes)) {
        return Some(Metadata::Tiff(exif));
    }
    if let Some(tiff) = raw::as_tiff(bytes) {
        return reader.read_raw(tiff).ok().map(Metadata::Tiff);
    }
    let format = raw::raw_format(bytes, path)?;
    if format == "cr3" {
        let tiff_box = |name: &[u8; 4]| reader.read_raw(raw::canon_box(bytes, name)?.to_vec()).ok();
        let boxes = CanonBoxes { main: tiff_box(b"CMT1"), exif: tiff_box(b"CMT2"), gps: tiff_box(b"CMT4") };
        return Some(Metadata::Canon(Box::new(boxes)));
    }
    raw::embedded_previews(bytes)
        .into_iter()
        .find_map(|preview| reader.read_from_container(&mut Cursor::new(preview)).ok())
        .map(Metadata::Tiff)
}

/// Which way up the picture is stored, by its EXIF orientation tag.
pub fn orientation(metadata: &Metadata) -> Option<Orientation> {
    let value = metadata.field(Tag::Orientation)?.value.get_uint(0)?;
    Orientation::from_exif(u8::try_from(value).ok()?)
}

/// The version of what [`photo_facts`] reads, recorded with each picture: raised when it reads
/// more, so that the next `index` reads the files of older records again (1: captions).
pub const FACTS_VERSION: u32 = 1;

/// What a picture file (and its sidecars) says: EXIF's date, camera and place, what people wrote
/// about it (`captions`), and where the file says nothing, Google Photos' JSON (`takeout`).
pub fn photo_facts(bytes: &[u8], path: &Path) -> PhotoFacts {
    let metadata = read_exif(bytes, path);
    let google = super::takeout::read(path).unwrap_or_default();
    let captions = super::captions::read(bytes, path, metadata.as_ref()).or(google.captions);
    let mut facts = metadata.as_ref().map(exif_facts).unwrap_or_default();
    facts.taken = facts.taken.or(google.taken);
    facts.gps = facts.gps.or(google.place);
    (facts.title, facts.description, facts.keywords) = (captions.title, captions.description, captions.keywords);
    facts.rating = captions.rating;
    facts
}

fn exif_facts(metadata: &Metadata) -> PhotoFacts {
    let ascii = |tag: Tag| -> Option<String> {
        match &metadata.field(tag)?.value {
            Value::Ascii(parts) => {
                let text = String::from_utf8_lossy(parts.first()?).trim_matches(char::from(0)).trim().to_string();
                (!text.is_empty()).then_some(text)
            }
            _ => None,
        }
    };
    let degrees = |tag: Tag, reference: Tag, negative: &str| -> Option<f64> {
        let Value::Rational(parts) = &metadata.field(tag)?.value else { return None };
        let [d, m, s] = parts.get(..3)? else { return None };
        let value = d.to_f64() + m.to_f64() / 60.0 + s.to_f64() / 3600.0;
        let sign = if ascii(reference).is_some_and(|r| r.eq_ignore_ascii_case(negative)) { -1.0 } else { 1.0 };
        value.is_finite().then_some(sign * value)
    };
    let gps = match (
        degrees(Tag::GPSLatitude, Tag::GPSLatitudeRef, "S"),
        degrees(Tag::GPSLongitude, Tag::GPSLongitudeRef, "W"),
    ) {
        (Some(lat), Some(lon)) if crate::geo::is_valid(lat, lon) => Some((lat, lon)),
        // A satellite or aerial tile: the centre of its georeferenced picture.
        _ => match metadata {
            Metadata::Tiff(exif) => super::geotiff::centre(exif),
            Metadata::Canon(_) => None,
        },
    };
    PhotoFacts {
        taken: ascii(Tag::DateTimeOriginal).or_else(|| ascii(Tag::DateTime)).and_then(|t| parse_exif_datetime(&t)),
        camera_make: ascii(Tag::Make),
        camera_model: ascii(Tag::Model),
        gps,
        ..PhotoFacts::default()
    }
}

/// "YYYY:MM:DD HH:MM:SS" → Unix seconds (the camera's local time, read as UTC).
pub fn parse_exif_datetime(text: &str) -> Option<i64> {
    let digits: Vec<i64> =
        text.split([':', ' ', '-', 'T']).filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect::<Option<_>>()?;
    let [y, mo, d, h, mi, s] = digits.get(..6)?.try_into().ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 || y < 1800 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
/// Days since 1970-01-01 → (year, month, day) (civil-from-days, Howard Hinnant).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exif_dates_become_unix_seconds() {
        assert_eq!(parse_exif_datetime("1970:01:01 00:00:00"), Some(0));
        assert_eq!(parse_exif_datetime("2021:05:03 14:22:01"), Some(1_620_051_721));
        assert_eq!(parse_exif_datetime("0000:00:00 00:00:00"), None);
        assert_eq!(parse_exif_datetime("garbage"), None);
    }
}
