//! The text cleaning open_clip applies before its BPE (`_clean_lower` in
//! `open_clip/tokenizer.py`): `ftfy.fix_text`, Python's `html.unescape` twice, whitespace
//! collapsed to single spaces, lowercase. Without it, texts with curly quotes, HTML entities,
//! ligatures or full-width letters tokenize differently from open_clip: `it’s` gave a text
//! embedding at cosine 0.73 to open_clip's on a test model.
//!
//! ftfy 6.3.1's `fix_text` is ported with its default configuration except its mojibake
//! repair (`fix_encoding`, and the `restore_byte_a0`, `replace_lossy_sequences` and
//! `decode_inconsistent_utf8` fixes only it runs): text that is itself mis-decoded UTF-8, such
//! as "cafÃ©", is not repaired (open_clip gives "café", this gives "cafã©"). Python's
//! `html.unescape` is reproduced exactly. Normalization and case mapping use the Unicode
//! version of `unicode-normalization` and std, which may be newer than Python's.

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;

/// Python's `html.entities.html5`, one `name<TAB>code points in hex` a line (names with and
/// without their ';'). Regenerate with:
/// python3 -c "import html.entities as e; [print(k, ' '.join('%X' % ord(c) for c in v), sep='\t') for k, v in sorted(e.html5.items())]" > src/model/html5_entities.txt
const HTML5_ENTITIES_TSV: &str = include_str!("html5_entities.txt");

const REPLACEMENT_CHARACTER: char = '\u{fffd}';

/// Bytes 0x80..=0x9F in Windows-1252, with the five it leaves undefined (0x81, 0x8D, 0x8F,
/// 0x90, 0x9D) kept as the same code point: ftfy's "sloppy-windows-1252", and the table
/// Python's `html.unescape` uses for numeric references in that range.
const WINDOWS_1252_C1: [char; 32] = [
    '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{2c6}', '\u{2030}',
    '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}',
    '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}',
    '\u{17e}', '\u{178}',
];

/// How open_clip cleans a text before its tokenizer sees it (`tokenizer_kwargs.clean`): each
/// way starts with `basic_clean` (ftfy, HTML entities twice, strip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextCleaning {
    /// `_clean_whitespace`: whitespace collapsed to single spaces (`HFTokenizer`'s default).
    Whitespace,
    /// `_clean_lower`: as `Whitespace`, then lowercased (open_clip's own CLIP tokenizer).
    Lower,
    /// `_clean_canonicalize` (SigLIP's, from big_vision): `_` read as a space, ASCII
    /// punctuation removed, lowercased, whitespace collapsed.
    Canonicalize,
}

impl TextCleaning {
    /// `tokenizer_kwargs.clean`'s value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "whitespace" => Some(Self::Whitespace),
            "lower" => Some(Self::Lower),
            "canonicalize" => Some(Self::Canonicalize),
            _ => None,
        }
    }
}

/// The text open_clip's `clean` function of that kind returns for `text`.
pub fn open_clip_clean(text: &str, cleaning: TextCleaning) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    let text = match cleaning {
        // `text.replace("_", " ").translate(<string.punctuation removed>)`.
        TextCleaning::Canonicalize => unescaped
            .chars()
            .filter(|c| !c.is_ascii_punctuation() || *c == '_')
            .map(|c| if c == '_' { ' ' } else { c })
            .collect(),
        TextCleaning::Whitespace | TextCleaning::Lower => unescaped,
    };
    // `" ".join(text.split())`; the `.strip()` calls around it have nothing left to remove.
    let words: Vec<&str> = text.split(is_python_space).filter(|word| !word.is_empty()).collect();
    match cleaning {
        TextCleaning::Whitespace => words.join(" "),
        // Canonicalize lowercases before it collapses the whitespace, which is the same:
        // lowercasing makes no whitespace.
        TextCleaning::Lower | TextCleaning::Canonicalize => words.join(" ").to_lowercase(),
    }
}

/// Python's `str.isspace`: Unicode White_Space plus the separators U+001C..=U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `ftfy.fix_text` without mojibake repair. Each line is fixed on its own, and HTML entities
/// are unescaped ("auto") only up to the first line that holds a literal '<': from there on
/// the text is taken to be HTML, whose entities are not ftfy's to decode.
fn fix_text(text: &str) -> String {
    let mut unescape_entities = true;
    let mut fixed = String::with_capacity(text.len());
    for segment in text.split_inclusive('\n') {
        if segment.contains('<') {
            unescape_entities = false;
        }
        fixed.push_str(&fix_segment(segment, unescape_entities));
    }
    fixed
}

/// ftfy's `fix_and_explain`: its fixers in ftfy's order, repeated until nothing changes.
/// (`fix_surrogates` has nothing to do: a Rust string holds no surrogates.)
fn fix_segment(segment: &str, unescape_entities: bool) -> String {
    let mut text = segment.to_owned();
    loop {
        let unescaped = if unescape_entities { unescape_html_entities(&text) } else { text.clone() };
        let decoded: String = unescaped.chars().map(decode_c1_control).collect();
        let unligated = translate(&decoded, latin_ligature);
        let narrowed = translate(&unligated, |c| width_map().get(&c).map(String::as_str));
        let uncurled: String = narrowed.chars().map(uncurl_quote).collect();
        let unbroken = fix_line_breaks(&uncurled);
        let without_escapes = remove_terminal_escapes(&unbroken);
        let fixed: String = without_escapes.chars().filter(|&c| !is_unwanted_control(c)).nfc().collect();
        if fixed == text {
            return fixed;
        }
        text = fixed;
    }
}

/// Python's `str.translate` with a table of replacement strings.
fn translate(text: &str, replacement: impl Fn(char) -> Option<&'static str>) -> String {
    let mut translated = String::with_capacity(text.len());
    for c in text.chars() {
        match replacement(c) {
            Some(replaced) => translated.push_str(replaced),
            None => translated.push(c),
        }
    }
    translated
}

/// ftfy's `fix_c1_controls`: C1 controls are almost always Windows-1252 bytes decoded as
/// Latin-1, so they are read as Windows-1252, as Web browsers do.
fn decode_c1_control(c: char) -> char {
    match u32::from(c) {
        code @ 0x80..=0x9f => windows_1252_c1(code),
        _ => c,
    }
}

/// `code` must be in 0x80..=0x9F.
fn windows_1252_c1(code: u32) -> char {
    WINDOWS_1252_C1[(code - 0x80) as usize]
}

/// ftfy's `LIGATURES`: single-character Latin ligatures and digraphs, which are usually
/// copy-and-paste accidents, spelled out. Not their NFKC: 'ﬅ' becomes "ſt", not "st".
fn latin_ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "\u{2bc}n",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "D\u{17d}",
        'ǅ' => "D\u{17e}",
        'ǆ' => "d\u{17e}",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "\u{17f}t",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// ftfy's `WIDTH_MAP`: U+3000 IDEOGRAPHIC SPACE to a space, and each halfwidth or fullwidth
/// form in U+FF01..=U+FFEF to its NFKC where that differs.
fn width_map() -> &'static HashMap<char, String> {
    static WIDTH_MAP: OnceLock<HashMap<char, String>> = OnceLock::new();
    WIDTH_MAP.get_or_init(|| {
        let mut map = HashMap::from([('\u{3000}', " ".to_owned())]);
        for c in '\u{ff01}'..='\u{ffef}' {
            let normalized: String = std::iter::once(c).nfkc().collect();
            if normalized != c.to_string() {
                map.insert(c, normalized);
            }
        }
        map
    })
}

/// ftfy's `uncurl_quotes`.
fn uncurl_quote(c: char) -> char {
    match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
        '\u{201c}'..='\u{201f}' => '"',
        _ => c,
    }
}

/// ftfy's `fix_line_breaks`: CRLF, CR, LINE SEPARATOR, PARAGRAPH SEPARATOR and NEXT LINE
/// all become "\n".
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\r' | '\u{2028}' | '\u{2029}' | '\u{85}' => '\n',
            _ => c,
        })
        .collect()
}

/// ftfy's `remove_terminal_escapes`: drops each match of `\x1b\[((?:\d|;)*)([a-zA-Z])`.
/// Python's `\d` also takes non-ASCII decimal digits; std has no test for those, so here an
/// escape such as "\x1b[٣m" is not one (its ESC alone goes, as a control character).
fn remove_terminal_escapes(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(escape) = rest.find("\x1b[") {
        kept.push_str(&rest[..escape]);
        let parameters = &rest[escape + 2..];
        let parameters_len = parameters.bytes().take_while(|&b| b.is_ascii_digit() || b == b';').count();
        let ends_in_letter = parameters.as_bytes().get(parameters_len).is_some_and(u8::is_ascii_alphabetic);
        if ends_in_letter {
            rest = &parameters[parameters_len + 1..];
        } else {
            kept.push('\x1b');
            rest = &rest[escape + 1..];
        }
    }
    kept.push_str(rest);
    kept
}

/// ftfy's `remove_control_chars`: controls that produce no whitespace, the deprecated Arabic
/// format controls, the byte order mark, interlinear annotations and U+FFFC.
fn is_unwanted_control(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{e}'..='\u{1f}'
            | '\u{7f}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}'
    )
}

/// ftfy's `unescape_html`: decodes each `&#?[0-9A-Za-z]{1,24};` that is an entity of
/// [`ftfy_entities`] or a complete numeric reference, and leaves everything else alone, so
/// that informal text ("this&not that") keeps its ampersands.
fn unescape_html_entities(text: &str) -> String {
    let mut unescaped = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(ampersand) = rest.find('&') {
        unescaped.push_str(&rest[..ampersand]);
        let from_ampersand = &rest[ampersand..];
        let Some(entity_len) = entity_like_len(from_ampersand) else {
            unescaped.push('&');
            rest = &from_ampersand[1..];
            continue;
        };
        let entity = &from_ampersand[..entity_len];
        match ftfy_entities().get(entity) {
            Some(value) => unescaped.push_str(value),
            None if entity.starts_with("&#") => {
                let decoded = html_unescape(entity);
                // Only part of it was a reference ("&#12ab;"): ftfy keeps the whole as it is.
                if decoded.contains(';') {
                    unescaped.push_str(entity);
                } else {
                    unescaped.push_str(&decoded);
                }
            }
            None => unescaped.push_str(entity),
        }
        rest = &from_ampersand[entity_len..];
    }
    unescaped.push_str(rest);
    unescaped
}

/// Byte length of the match of `&#?[0-9A-Za-z]{1,24};` at the start of `text`, if any.
fn entity_like_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'&') {
        return None;
    }
    let body_start = if bytes.get(1) == Some(&b'#') { 2 } else { 1 };
    let body_len = bytes[body_start..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
    let semicolon = body_start + body_len;
    ((1..=24).contains(&body_len) && bytes.get(semicolon) == Some(&b';')).then_some(semicolon + 1)
}

/// ftfy's `HTML_ENTITIES`: "&name;" for every html5 name that ends in ';', plus the all-caps
/// spelling of each lowercase one ("&NTILDE;" → "Ñ") where Python's `html.unescape` leaves
/// that spelling alone.
fn ftfy_entities() -> &'static HashMap<String, String> {
    static FTFY_ENTITIES: OnceLock<HashMap<String, String>> = OnceLock::new();
    FTFY_ENTITIES.get_or_init(|| {
        let mut entities = HashMap::new();
        for (&name, value) in html5_entities() {
            if !name.ends_with(';') {
                continue;
            }
            entities.insert(format!("&{name}"), value.clone());
            if name.to_lowercase() == name {
                let all_caps = format!("&{}", name.to_uppercase());
                if html_unescape(&all_caps) == all_caps {
                    entities.insert(all_caps, value.to_uppercase());
                }
            }
        }
        entities
    })
}

/// `html.entities.html5`: entity name (with its ';' where it has one) to its text.
fn html5_entities() -> &'static HashMap<&'static str, String> {
    static HTML5_ENTITIES: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    HTML5_ENTITIES.get_or_init(|| {
        HTML5_ENTITIES_TSV
            .lines()
            .map(|line| {
                let (name, code_points) =
                    line.split_once('\t').expect("html5_entities.txt: each line is name<TAB>code points");
                let value: String = code_points
                    .split(' ')
                    .map(|hex| {
                        let code = u32::from_str_radix(hex, 16).expect("html5_entities.txt: code points are hex");
                        char::from_u32(code).expect("html5_entities.txt: valid code points")
                    })
                    .collect();
                (name, value)
            })
            .collect()
    })
}

/// Python's `html.unescape`: replaces each match of
/// `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`, scanning left to right.
fn html_unescape(text: &str) -> String {
    let mut unescaped = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(ampersand) = rest.find('&') {
        unescaped.push_str(&rest[..ampersand]);
        let after_ampersand = &rest[ampersand + 1..];
        match unescape_reference(after_ampersand) {
            Some((replacement, consumed)) => {
                unescaped.push_str(&replacement);
                rest = &after_ampersand[consumed..];
            }
            None => {
                unescaped.push('&');
                rest = after_ampersand;
            }
        }
    }
    unescaped.push_str(rest);
    unescaped
}

/// The character reference that follows an '&' at the start of `text`: what it decodes to and
/// how many bytes of `text` it spans. `None` where Python leaves it as it is.
fn unescape_reference(text: &str) -> Option<(String, usize)> {
    if let Some(number) = text.strip_prefix('#') {
        let hex_digits = number.strip_prefix('x').or_else(|| number.strip_prefix('X'));
        let (radix, digits) = match hex_digits {
            Some(hex_digits) => (16, hex_digits),
            None => (10, number),
        };
        let mut digit_count = 0;
        let mut code = 0u32;
        for digit in digits.chars().map_while(|c| c.to_digit(radix)) {
            digit_count += 1;
            // Clamped just past Unicode, so that any number of digits decodes without overflow.
            // (Python raises ValueError for more than 4300 decimal digits; this gives U+FFFD.)
            code = (code * radix + digit).min(BEYOND_UNICODE);
        }
        if digit_count == 0 {
            return None;
        }
        let mut consumed = text.len() - digits.len() + digit_count;
        if text[consumed..].starts_with(';') {
            consumed += 1;
        }
        let decoded = numeric_reference(code).map(String::from).unwrap_or_default();
        return Some((decoded, consumed));
    }

    let name_len: usize = text
        .chars()
        .take_while(|&c| !matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';'))
        .take(32)
        .map(char::len_utf8)
        .sum();
    if name_len == 0 {
        return None;
    }
    let mut consumed = name_len;
    if text[consumed..].starts_with(';') {
        consumed += 1;
    }
    let name = &text[..consumed];
    let entities = html5_entities();
    if let Some(value) = entities.get(name) {
        return Some((value.clone(), consumed));
    }
    // The longest prefix of at least two code points that is an entity: the legacy names
    // without ';' ("&copy2024", "&ampxyz") end wherever the name does.
    let prefix_ends: Vec<usize> = name.char_indices().map(|(start, _)| start).skip(2).collect();
    prefix_ends.into_iter().rev().find_map(|prefix_end| {
        let value = entities.get(&name[..prefix_end])?;
        Some((format!("{value}{}", &name[prefix_end..]), consumed))
    })
}

/// The first number past the last Unicode code point.
const BEYOND_UNICODE: u32 = 0x11_0000;

/// What Python's `html.unescape` makes of `&#<code>;`; `None` where it drops the reference.
fn numeric_reference(code: u32) -> Option<char> {
    match code {
        0 => Some(REPLACEMENT_CHARACTER),
        0x0d => Some('\r'),
        0x80..=0x9f => Some(windows_1252_c1(code)),
        0xd800..=0xdfff => Some(REPLACEMENT_CHARACTER),
        _ if code >= BEYOND_UNICODE => Some(REPLACEMENT_CHARACTER),
        0x01..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0xfdd0..=0xfdef => None,
        // The noncharacters U+FFFE and U+FFFF of every plane.
        _ if (code & 0xfffe) == 0xfffe => None,
        _ => Some(char::from_u32(code).unwrap_or(REPLACEMENT_CHARACTER)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, what open_clip returns for it), computed with the real thing (open_clip with
    /// ftfy 6.3.1 on Python 3.11.7: `import open_clip.tokenizer as t; t._clean_lower(x)`), on
    /// inputs whose result ftfy's mojibake repair does not change. Known difference, not
    /// tested: "cafÃ©" (mis-decoded UTF-8) gives "café" there, "cafã©" here.
    const OPEN_CLIP_CASES: &[(&str, &str)] = &[
        ("it’s a cat", "it's a cat"),
        ("“quoted” ‘single’ \u{201b}odd\u{201f} \u{2bc}modifier", "\"quoted\" 'single' 'odd\" 'modifier"),
        ("don&rsquo;t", "don't"),
        ("Tom &amp; Jerry", "tom & jerry"),
        ("&amp;amp;", "&"),
        ("<p>&amp;amp;lt;", "<p>&lt;"),
        ("&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b>"),
        ("<i>x</i> &lt;b&gt;", "<i>x</i> <b>"),
        ("&NTILDE;", "ñ"),
        ("<p> &NTILDE;", "<p> &ntilde;"),
        ("&NTILDE;\n<p>\n&NTILDE;", "ñ <p> &ntilde;"),
        ("&AMP;", "&"),
        ("&ampxyz", "&xyz"),
        ("&SZLIG; &nTILDE; &eacute;", "ss &ntilde; é"),
        ("&notit;", "¬it;"),
        ("&#x1F600;", "😀"),
        ("&#128;", "€"),
        ("&#0;", "\u{fffd}"),
        ("&#99999999999999999999;", "\u{fffd}"),
        ("&#xD800;", "\u{fffd}"),
        ("&#x110000; &#xFFFE;x &#65 &#x42;&#X43", "\u{fffd} x a bc"),
        ("a&#1;b &#13;c", "ab c"),
        ("&#12ab;", "ab;"),
        ("&#; &#xZZ; & ;", "&#; &#xzz; & ;"),
        ("&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;", "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;"),
        ("&copy 2024", "© 2024"),
        ("ﬁsh ﬂour ﬀ ﬃ ﬄ ﬅ ﬆ Ĳ ǅ ŉ", "fish flour ff ffi ffl ſt st ij dž 'n"),
        ("ＣＡＴ\u{3000}ｄｏｇ", "cat dog"),
        ("ﾊﾟﾝ ｶﾞ", "パン ガ"),
        ("a\u{2028}b\u{2029}c", "a b c"),
        ("a\r\nb\rc", "a b c"),
        ("a\u{85}b", "a…b"),
        ("\u{93}quoted\u{94} \u{80} \u{81}\u{8d}", "\"quoted\" € \u{81}\u{8d}"),
        ("\u{1b}[31mred\u{1b}[0m \u{1b}[1;32mgreen\u{1b}[m \u{1b}x", "red green x"),
        ("a\u{0}b\u{7}c\u{7f}d\u{206a}e\u{fffc}f\u{b}g", "abcdefg"),
        ("\u{feff}hello", "hello"),
        ("cafe\u{301}", "café"),
        ("ΣΑΣ", "σας"),
        ("İstanbul", "i\u{307}stanbul"),
        ("  \t lead\u{1c}\u{1d}mid\u{3000}\u{3000}trail \n\n", "leadmid trail"),
        ("\u{a0}nbsp\u{2009}thin\u{a0}", "nbsp thin"),
        ("", ""),
        ("🐱 emoji 👍🏽", "🐱 emoji 👍🏽"),
        ("東京タワー", "東京タワー"),
    ];

    #[test]
    fn cleans_like_open_clip() {
        for (input, expected) in OPEN_CLIP_CASES {
            assert_eq!(open_clip_clean(input, TextCleaning::Lower), *expected, "input {input:?}");
        }
    }

    /// (input, `_clean_canonicalize`, `_clean_whitespace`) from open_clip 2.32.
    const OTHER_CLEANINGS: &[(&str, &str, &str)] = &[
        ("A_CAT, on the BEACH!!", "a cat on the beach", "A_CAT, on the BEACH!!"),
        ("snake__case (and) [brackets] {x} <y>", "snake case and brackets x y", "snake__case (and) [brackets] {x} <y>"),
        (
            "don't stop—it's 3:45pm; isn't it? (yes/no) #tag @user",
            "dont stop—its 345pm isnt it yesno tag user",
            "don't stop—it's 3:45pm; isn't it? (yes/no) #tag @user",
        ),
        ("“Quotes” &amp; ‘more’ — dashes…", "quotes more — dashes…", "\"Quotes\" & 'more' — dashes…"),
        ("  _leading_ and trailing_  ", "leading and trailing", "_leading_ and trailing_"),
        ("ΣΑΣ! İstanbul", "σας i\u{307}stanbul", "ΣΑΣ! İstanbul"),
        ("ＣＡＴ＿ｄｏｇ", "cat dog", "CAT_dog"),
        (
            "100% $5 ^caret^ `tick` ~tilde~ |pipe| \\back\\",
            "100 5 caret tick tilde pipe back",
            "100% $5 ^caret^ `tick` ~tilde~ |pipe| \\back\\",
        ),
        ("a.b.c", "abc", "a.b.c"),
        ("", "", ""),
    ];

    #[test]
    fn canonicalizes_and_cleans_whitespace_like_open_clip() {
        for (input, canonical, whitespace) in OTHER_CLEANINGS {
            assert_eq!(open_clip_clean(input, TextCleaning::Canonicalize), *canonical, "input {input:?}");
            assert_eq!(open_clip_clean(input, TextCleaning::Whitespace), *whitespace, "input {input:?}");
        }
    }

    #[test]
    fn tables_have_pythons_sizes() {
        // len() of html.entities.html5, ftfy.chardata.HTML_ENTITIES and ftfy.chardata.WIDTH_MAP
        assert_eq!(html5_entities().len(), 2231);
        assert_eq!(ftfy_entities().len(), 3501);
        assert_eq!(width_map().len(), 226);
    }
}
