//! What people wrote about their pictures: a title, a description and keywords (with the names
//! of the people in it), and the stars they gave them, as photo managers store them. Lightroom, digiKam, darktable, Capture
//! One, Photoshop, Windows Explorer, Apple Photos' exports and Google Photos' downloads write them
//! into the file (XMP, IPTC, EXIF) or beside it (a sidecar `.xmp`, what RAW workflows use).
//!
//! Where one picture carries several, the first found wins for the title, the description and the
//! rating, in
//! this order: the sidecar, the file's XMP, its IPTC, its EXIF (the Metadata Working Group's
//! guidance: XMP is what current tools keep in sync). Keywords from every source are merged.

use std::path::{Path, PathBuf};

use exif::{Context, Tag, Value};

use super::exif::Metadata;

/// Longest title or description kept, in characters; longer ones are cut (a hostile or broken
/// file must not bloat the catalog and the text index).
const MAX_TEXT_CHARS: usize = 2000;
/// Most keywords kept of one picture, and the longest one, in characters.
const MAX_KEYWORDS: usize = 200;
const MAX_KEYWORD_CHARS: usize = 200;
/// Largest XMP packet read; a caption is a few kilobytes, a packet of megabytes carries
/// something else (a depth map, an edit history).
const MAX_XMP_BYTES: usize = 2 << 20;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Captions {
    pub title: Option<String>,
    pub description: Option<String>,
    pub keywords: Vec<String>,
    /// Stars, 1–5; 0 unrated, -1 rejected (XMP's scale).
    pub rating: Option<i8>,
}

impl Captions {
    /// Fills what `self` lacks from `other` (a source of lower precedence); keywords are merged.
    pub fn or(mut self, other: Captions) -> Captions {
        self.title = self.title.or(other.title);
        self.description = self.description.or(other.description);
        self.rating = self.rating.or(other.rating);
        for keyword in other.keywords {
            self.add_keyword(&keyword);
        }
        self
    }

    fn add_keyword(&mut self, keyword: &str) {
        let Some(keyword) = clean(keyword, MAX_KEYWORD_CHARS) else { return };
        let known = self.keywords.iter().any(|k| k.to_lowercase() == keyword.to_lowercase());
        if !known && self.keywords.len() < MAX_KEYWORDS {
            self.keywords.push(keyword);
        }
    }
}

/// The captions of the picture file at `path` (its bytes `bytes`, its EXIF `metadata`), with
/// those of its sidecar, if it has one.
pub fn read(bytes: &[u8], path: &Path, metadata: Option<&Metadata>) -> Captions {
    let sidecar = sidecar_xmp(path).map(|xmp| from_xmp(&xmp)).unwrap_or_default();
    let (xmp, iptc) = embedded_packets(bytes, metadata);
    let exif = metadata.map(from_exif).unwrap_or_default();
    sidecar.or(xmp.map(|xmp| from_xmp(&xmp)).unwrap_or_default()).or(iptc.map(from_iptc).unwrap_or_default()).or(exif)
}

/// The names a sidecar of `path` may have: `IMG_1.CR2.xmp` (darktable, digiKam) and `IMG_1.xmp`
/// (Lightroom, Capture One, digiKam's option), each in lower and upper case.
fn sidecar_paths(path: &Path) -> Vec<PathBuf> {
    let whole_name = ["xmp", "XMP"].map(|extension| {
        let mut beside = path.as_os_str().to_owned();
        beside.push(".");
        beside.push(extension);
        PathBuf::from(beside)
    });
    // The more particular name first: `IMG_1.xmp` may be shared by `IMG_1.CR2` and `IMG_1.JPG`.
    whole_name.into_iter().chain(["xmp", "XMP"].map(|extension| path.with_extension(extension))).collect()
}

/// Captions from a video container's tags (title, description or comment, keywords separated by
/// commas or semicolons).
pub fn from_tags(title: Option<&str>, description: Option<&str>, keywords: Option<&str>) -> Captions {
    from_texts(title, description, keywords.iter().flat_map(|k| k.split([',', ';'])))
}

/// Captions from texts of another source, cleaned and bounded as every source's are.
pub fn from_texts<'a>(
    title: Option<&str>,
    description: Option<&str>,
    keywords: impl IntoIterator<Item = &'a str>,
) -> Captions {
    let mut captions = Captions {
        title: title.and_then(|t| clean(t, MAX_TEXT_CHARS)),
        description: description.and_then(|d| clean(d, MAX_TEXT_CHARS)).filter(|d| !is_camera_default(d)),
        ..Captions::default()
    };
    for keyword in keywords {
        captions.add_keyword(keyword);
    }
    captions
}

/// Whether `path` is named like a sidecar (`.xmp`): a changed one makes its pictures read again.
pub fn is_sidecar(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("xmp"))
}

/// The pictures that sidecar `sidecar` may describe, among the files `siblings` of its folder:
/// `IMG_1.CR2` for `IMG_1.CR2.xmp`, any `IMG_1.*` for `IMG_1.xmp`.
pub fn described_by<'a>(sidecar: &Path, siblings: &'a [PathBuf]) -> impl Iterator<Item = &'a PathBuf> + 'a {
    let stem = sidecar.file_stem().map(|s| s.to_os_string());
    siblings.iter().filter(move |candidate| {
        !is_sidecar(candidate)
            && stem.as_ref().is_some_and(|stem| {
                candidate.file_name() == Some(stem.as_os_str()) || candidate.file_stem() == Some(stem.as_os_str())
            })
    })
}

fn sidecar_xmp(path: &Path) -> Option<String> {
    sidecar_paths(path).into_iter().find_map(|sidecar| {
        use std::io::Read;
        let file = std::fs::File::open(sidecar).ok()?;
        let mut text = String::new();
        file.take(MAX_XMP_BYTES as u64).read_to_string(&mut text).ok()?;
        Some(text)
    })
}

/// The file's XMP packet and IPTC-IIM block. JPEG: walked segment by segment up to the picture
/// data (XMP in APP1, IPTC in Photoshop's APP13). TIFF and the RAW formats built on it: their
/// tags 700 and 33723. Other containers (PNG, WebP, HEIF) keep XMP as plain text in a chunk or an
/// item, so it is searched for.
fn embedded_packets(bytes: &[u8], metadata: Option<&Metadata>) -> (Option<String>, Option<Vec<u8>>) {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return jpeg_packets(bytes);
    }
    let tiff_tag = |number: u16| match &metadata?.field(Tag(Context::Tiff, number))?.value {
        Value::Byte(data) | Value::Undefined(data, _) => Some(data.clone()),
        // IPTC in TIFF is often typed LONG: the stream's bytes read as words in the file's byte
        // order. A stream starts with the tag marker 0x1C, which tells that order.
        Value::Long(words) => {
            let big_endian: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            if big_endian.first() == Some(&0x1C) {
                Some(big_endian)
            } else {
                Some(words.iter().flat_map(|w| w.to_le_bytes()).collect())
            }
        }
        _ => None,
    };
    let xmp = tiff_tag(700).map(|data| String::from_utf8_lossy(&data).into_owned()).or_else(|| {
        let start = memchr::memmem::find(bytes, b"<x:xmpmeta")?;
        let length = memchr::memmem::find(&bytes[start..], b"</x:xmpmeta>")? + b"</x:xmpmeta>".len();
        (length <= MAX_XMP_BYTES).then(|| String::from_utf8_lossy(&bytes[start..start + length]).into_owned())
    });
    (xmp, tiff_tag(33723))
}

fn jpeg_packets(bytes: &[u8]) -> (Option<String>, Option<Vec<u8>>) {
    const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
    const PHOTOSHOP_HEADER: &[u8] = b"Photoshop 3.0\0";
    let (mut xmp, mut iptc) = (None, None);
    let mut at = 2;
    while at + 4 <= bytes.len() && bytes[at] == 0xFF {
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // the picture data starts: no metadata after it
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        let Some(segment) = bytes.get(at + 4..at + 2 + length) else { break };
        if marker == 0xE1 && xmp.is_none() {
            if let Some(packet) = segment.strip_prefix(XMP_HEADER) {
                xmp = Some(String::from_utf8_lossy(packet).into_owned());
            }
        } else if marker == 0xED && iptc.is_none() {
            iptc = segment.strip_prefix(PHOTOSHOP_HEADER).and_then(photoshop_iptc);
        }
        at += 2 + length;
    }
    (xmp, iptc)
}

/// The IPTC-IIM block (image resource 0x0404) of Photoshop's image resources.
fn photoshop_iptc(mut resources: &[u8]) -> Option<Vec<u8>> {
    while resources.len() >= 12 && resources.starts_with(b"8BIM") {
        let id = u16::from_be_bytes([resources[4], resources[5]]);
        // A Pascal string, padded to an even length with its length byte.
        let name_length = usize::from(resources[6]);
        let name_field = (name_length + 2) & !1;
        let size_at = 6 + name_field;
        let size_bytes = resources.get(size_at..size_at + 4)?;
        let size = u32::from_be_bytes(size_bytes.try_into().ok()?) as usize;
        let data = resources.get(size_at + 4..size_at + 4 + size)?;
        if id == 0x0404 {
            return Some(data.to_vec());
        }
        resources = resources.get(size_at + 4 + ((size + 1) & !1)..)?;
    }
    None
}

/// IPTC-IIM: the object name and headline (title), the caption (description) and keywords.
fn from_iptc(iim: Vec<u8>) -> Captions {
    let mut datasets = Vec::new();
    let mut utf8 = false;
    let mut at = 0;
    while at + 5 <= iim.len() && iim[at] == 0x1C {
        let (record, dataset) = (iim[at + 1], iim[at + 2]);
        let length = usize::from(u16::from_be_bytes([iim[at + 3], iim[at + 4]]));
        if length & 0x8000 != 0 {
            break; // an extended dataset (over 32 KB): not a caption
        }
        let Some(value) = iim.get(at + 5..at + 5 + length) else { break };
        // 1:90 "ESC % G" declares UTF-8; without it, the text is Latin-1 (what older tools wrote).
        if (record, dataset) == (1, 90) && value == b"\x1b%G" {
            utf8 = true;
        }
        if record == 2 {
            datasets.push((dataset, value));
        }
        at += 5 + length;
    }
    let text = |value: &[u8]| -> String {
        match std::str::from_utf8(value) {
            Ok(text) if utf8 || value.is_ascii() => text.to_string(),
            _ if utf8 => String::from_utf8_lossy(value).into_owned(),
            _ => value.iter().map(|&b| char::from(b)).collect(),
        }
    };
    let first =
        |wanted: u8| datasets.iter().find(|(d, _)| *d == wanted).and_then(|(_, v)| clean(&text(v), MAX_TEXT_CHARS));
    let mut captions = Captions {
        title: first(5).or_else(|| first(105)),
        description: first(120).filter(|d| !is_camera_default(d)),
        ..Captions::default()
    };
    for (_, value) in datasets.iter().filter(|(d, _)| *d == 25) {
        captions.add_keyword(&text(value));
    }
    captions
}

/// EXIF: the image description, and what Windows Explorer writes (XPTitle, XPComment, XPSubject,
/// XPKeywords: UCS-2 text, keywords separated by ';'; its stars in Rating).
fn from_exif(metadata: &Metadata) -> Captions {
    let windows = |number: u16| -> Option<String> {
        let Value::Byte(data) = &metadata.field(Tag(Context::Tiff, number))?.value else { return None };
        let units: Vec<u16> = data.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect();
        clean(&String::from_utf16_lossy(&units), MAX_TEXT_CHARS)
    };
    let image_description = match &metadata.field(Tag::ImageDescription).map(|f| &f.value) {
        Some(Value::Ascii(parts)) => parts.first().and_then(|p| clean(&String::from_utf8_lossy(p), MAX_TEXT_CHARS)),
        _ => None,
    };
    let mut captions = Captions {
        title: windows(0x9C9B),
        description: image_description
            .filter(|d| !is_camera_default(d))
            .or_else(|| windows(0x9C9C))
            .or_else(|| windows(0x9C9F)),
        keywords: Vec::new(),
        // Windows' stars: 0 (unrated) to 5.
        rating: metadata
            .field(Tag(Context::Tiff, 0x4746))
            .and_then(|f| f.value.get_uint(0))
            .and_then(|stars| i8::try_from(stars).ok())
            .filter(|stars| (0..=5).contains(stars)),
    };
    for keyword in windows(0x9C9E).iter().flat_map(|k| k.split(';')) {
        captions.add_keyword(keyword);
    }
    captions
}

/// Descriptions cameras and phones write by themselves: not what anyone wrote.
fn is_camera_default(text: &str) -> bool {
    const DEFAULTS: &[&str] = &[
        "olympus digital camera",
        "sony dsc",
        "digital camera",
        "default",
        "exif_jpeg_picture",
        "exif jpeg",
        "konica minolta digital camera",
        "minolta digital camera",
        "samsung digital camera",
        "digital image",
        "<untitled>",
        "untitled",
        "image",
        "picture",
        "photo",
        "lg",
        "camera",
        "hdr",
    ];
    let text = text.trim().to_lowercase();
    DEFAULTS.contains(&text.as_str()) || text.chars().all(|c| !c.is_alphanumeric())
}

/// XMP (RDF/XML): Dublin Core's title, description and subject (the keywords); the rating;
/// Lightroom's and digiKam's keyword hierarchies (each level a keyword); Photoshop's headline (a
/// title); and the names of the people in the picture (face regions of the Metadata Working Group
/// and of Microsoft, IPTC's "person in image"). Unreadable XML gives nothing.
fn from_xmp(xml: &str) -> Captions {
    const DC: &str = "http://purl.org/dc/elements/1.1/";
    const XMP_BASIC: &str = "http://ns.adobe.com/xap/1.0/";
    const LIGHTROOM: &str = "http://ns.adobe.com/lightroom/1.0/";
    const DIGIKAM: &str = "http://www.digikam.org/ns/1.0/";
    const PHOTOSHOP: &str = "http://ns.adobe.com/photoshop/1.0/";
    const MWG_REGIONS: &str = "http://www.metadataworkinggroup.com/schemas/regions/";
    const MICROSOFT_REGION: &str = "http://ns.microsoft.com/photo/1.2/t/Region#";
    const IPTC_EXTENSION: &str = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/";
    // Some writers pad the packet with NULs or put text before it.
    let xml = xml.trim_matches(char::from(0));
    let xml = xml.find('<').map_or(xml, |start| &xml[start..]);
    let Ok(document) = roxmltree::Document::parse_with_options(
        xml,
        roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 100_000, ..Default::default() },
    ) else {
        return Captions::default();
    };
    let mut captions = Captions::default();
    let mut headline = None;
    // A property is an element (its text, or its rdf:li items) or, when simple, an attribute of
    // its rdf:Description.
    for node in document.descendants().filter(|n| n.is_element()) {
        for attribute in node.attributes() {
            let value = attribute.value();
            match (attribute.namespace(), attribute.name()) {
                (Some(PHOTOSHOP), "Headline") => headline = headline.or_else(|| clean(value, MAX_TEXT_CHARS)),
                (Some(XMP_BASIC), "Rating") => captions.rating = captions.rating.or(rating(value)),
                (Some(MWG_REGIONS), "Name") | (Some(MICROSOFT_REGION), "PersonDisplayName") => {
                    captions.add_keyword(value)
                }
                _ => {}
            }
        }
        let name = node.tag_name();
        match (name.namespace(), name.name()) {
            (Some(DC), "title") => captions.title = captions.title.take().or_else(|| alternative(node)),
            (Some(DC), "description") => {
                captions.description = captions.description.take().or_else(|| alternative(node))
            }
            (Some(PHOTOSHOP), "Headline") => headline = headline.or_else(|| clean(&text_of(node), MAX_TEXT_CHARS)),
            (Some(XMP_BASIC), "Rating") => captions.rating = captions.rating.or(rating(&text_of(node))),
            (Some(DC), "subject") | (Some(IPTC_EXTENSION), "PersonInImage") => {
                for item in items(node) {
                    captions.add_keyword(&item);
                }
            }
            (Some(LIGHTROOM), "hierarchicalSubject") => {
                for item in items(node) {
                    item.split('|').for_each(|level| captions.add_keyword(level));
                }
            }
            (Some(DIGIKAM), "TagsList") => {
                for item in items(node) {
                    item.split('/').for_each(|level| captions.add_keyword(level));
                }
            }
            (Some(MWG_REGIONS), "Name") | (Some(MICROSOFT_REGION), "PersonDisplayName") => {
                captions.add_keyword(&text_of(node))
            }
            _ => {}
        }
    }
    captions.title = captions.title.or(headline);
    captions
}

/// Stars as XMP writes them ("4", "4.0"; -1 rejected, 0 unrated, up to 5); anything else is
/// no rating.
fn rating(text: &str) -> Option<i8> {
    let stars = text.trim().parse::<f64>().ok()?.round();
    (-1.0..=5.0).contains(&stars).then_some(stars as i8)
}

/// The texts of a list property (rdf:Bag or rdf:Seq items), or its own text.
fn items(node: roxmltree::Node) -> Vec<String> {
    let listed: Vec<String> = node.descendants().filter(|n| n.has_tag_name((RDF, "li"))).map(text_of).collect();
    if listed.is_empty() {
        vec![text_of(node)]
    } else {
        listed
    }
}

/// A language alternative (rdf:Alt): the default language's text, else the first.
fn alternative(node: roxmltree::Node) -> Option<String> {
    const XML: &str = "http://www.w3.org/XML/1998/namespace";
    let items: Vec<roxmltree::Node> = node.descendants().filter(|n| n.has_tag_name((RDF, "li"))).collect();
    let chosen = items.iter().find(|n| n.attribute((XML, "lang")) == Some("x-default")).or(items.first());
    let text = chosen.map_or_else(|| text_of(node), |n| text_of(*n));
    clean(&text, MAX_TEXT_CHARS)
}

const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";

fn text_of(node: roxmltree::Node) -> String {
    node.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect()
}

/// Trimmed, with runs of white space (and control characters) as one space, cut to `max`
/// characters; `None` when nothing is left.
fn clean(text: &str, max: usize) -> Option<String> {
    let words: Vec<&str> =
        text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect();
    let joined: String = words.join(" ").chars().take(max).collect();
    (!joined.is_empty()).then_some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An XMP packet as Lightroom writes it (shared with the integration tests): a language
    /// alternative for the title, stars, keywords, a keyword hierarchy and a named face region.
    const LIGHTROOM_XMP: &str = include_str!("../../tests/fixtures/captions/lightroom.xmp");

    #[test]
    fn lightroom_xmp_gives_title_description_keywords_and_people() {
        let captions = from_xmp(LIGHTROOM_XMP);
        assert_eq!(captions.title.as_deref(), Some("Tram 28 in Alfama"), "x-default, white space folded");
        assert_eq!(captions.description.as_deref(), Some("Grandma's birthday outing & cake"));
        // "lisbon" from the hierarchy is the keyword "Lisbon" already there.
        assert_eq!(captions.keywords, ["tram", "family", "Lisbon", "Places", "Portugal", "Anna Silva"]);
        assert_eq!(captions.rating, Some(5));
    }

    #[test]
    fn ratings_are_whole_stars_from_rejected_to_five() {
        assert_eq!([rating("5"), rating(" 3.0 "), rating("-1"), rating("0")], [Some(5), Some(3), Some(-1), Some(0)]);
        assert_eq!([rating("6"), rating("-2"), rating("many"), rating("NaN")], [None, None, None, None]);
    }

    #[test]
    fn a_headline_is_the_title_where_there_is_none() {
        let xmp = LIGHTROOM_XMP.replace("<dc:title>", "<dc:other>").replace("</dc:title>", "</dc:other>");
        assert_eq!(from_xmp(&xmp).title.as_deref(), Some("Headline only"));
    }

    #[test]
    fn broken_or_hostile_xmp_gives_nothing() {
        assert_eq!(from_xmp("<x:xmpmeta><rdf:RDF"), Captions::default());
        let entities =
            r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>"#;
        assert_eq!(from_xmp(entities), Captions::default(), "no DTD, so no entity expansion");
        // Deep nesting neither overflows the stack nor passes the node limit unnoticed.
        let deep = format!("{}{}", "<a>".repeat(60_000), "</a>".repeat(60_000));
        assert_eq!(from_xmp(&deep), Captions::default());
        let wide = format!("<a>{}</a>", "<b/>".repeat(200_000));
        assert_eq!(from_xmp(&wide), Captions::default());
    }

    #[test]
    fn iptc_iim_in_photoshop_resources() {
        let dataset = |record: u8, number: u8, value: &[u8]| {
            let mut bytes = vec![0x1C, record, number];
            bytes.extend((value.len() as u16).to_be_bytes());
            bytes.extend(value);
            bytes
        };
        let iim: Vec<u8> = [
            dataset(1, 90, b"\x1b%G"),
            dataset(2, 5, "Café".as_bytes()),
            dataset(2, 120, b"OLYMPUS DIGITAL CAMERA"),
            dataset(2, 25, b"coffee"),
            dataset(2, 25, b"morning"),
        ]
        .concat();
        let mut resources = b"8BIM\x04\x0c\0\0".to_vec(); // a thumbnail resource first
        resources.extend(3u32.to_be_bytes());
        resources.extend(b"abc\0");
        resources.extend(b"8BIM\x04\x04\0\0");
        resources.extend((iim.len() as u32).to_be_bytes());
        resources.extend(&iim);
        let found = photoshop_iptc(&resources).expect("the IPTC resource");
        let captions = from_iptc(found);
        assert_eq!(captions.title.as_deref(), Some("Café"));
        assert_eq!(captions.description, None, "a camera's default text is not a description");
        assert_eq!(captions.keywords, ["coffee", "morning"]);
        // Without the UTF-8 declaration, bytes are Latin-1.
        let latin1 = from_iptc(dataset(2, 5, b"Caf\xe9"));
        assert_eq!(latin1.title.as_deref(), Some("Café"));
    }

    #[test]
    fn sidecars_are_named_after_the_picture_or_its_whole_name() {
        let names = sidecar_paths(Path::new("/p/IMG_1.CR2"));
        assert!(names.contains(&PathBuf::from("/p/IMG_1.xmp")));
        assert!(names.contains(&PathBuf::from("/p/IMG_1.CR2.xmp")));
        assert!(names.contains(&PathBuf::from("/p/IMG_1.XMP")));
        let siblings: Vec<PathBuf> =
            ["/p/IMG_1.CR2", "/p/IMG_1.jpg", "/p/IMG_10.jpg", "/p/IMG_1.xmp"].iter().map(PathBuf::from).collect();
        let of = |sidecar: &str| -> Vec<&PathBuf> { described_by(Path::new(sidecar), &siblings).collect() };
        assert_eq!(of("/p/IMG_1.xmp"), [&siblings[0], &siblings[1]]);
        assert_eq!(of("/p/IMG_1.CR2.xmp"), [&siblings[0]]);
    }

    #[test]
    fn text_is_cleaned_and_bounded() {
        assert_eq!(clean("  a\n\tb\u{0}c  ", 10).as_deref(), Some("a b c"));
        assert_eq!(clean(" \n ", 10), None);
        assert_eq!(clean("ééééé", 3).as_deref(), Some("ééé"));
        let mut captions = Captions::default();
        (0..500).for_each(|i| captions.add_keyword(&format!("k{i}")));
        assert_eq!(captions.keywords.len(), MAX_KEYWORDS);
    }
}
