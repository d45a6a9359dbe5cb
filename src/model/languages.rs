//! The language a query is written in, as NLLB's tokenizer names it: a FLORES-200 code
//! (`deu_Latn`), given as such or as the language tag a browser or a locale gives (`de`,
//! `de-DE`, `zh-TW`).
//!
//! NLLB-CLIP reads every text after its language's code, and pools at that code: the same words
//! after another language's code embed elsewhere (cosine 0.87 for "a photo of a cat" read as
//! English and as German, tests/fixtures). Immich sends its user's interface language the same
//! way. Models whose tokenizer has no language codes read every query alike.

/// Language tags (ISO 639-1, the primary subtag of a BCP 47 tag) and the FLORES-200 code of
/// the language NLLB-200 was trained on for each: the macrolanguage's standard variety where
/// FLORES names several (Arabic: Modern Standard, `arb_Arab`; Persian: Western, `pes_Arab`).
const TAGS: &[(&str, &str)] = &[
    ("af", "afr_Latn"),
    ("am", "amh_Ethi"),
    ("ar", "arb_Arab"),
    ("az", "azj_Latn"),
    ("be", "bel_Cyrl"),
    ("bg", "bul_Cyrl"),
    ("bn", "ben_Beng"),
    ("bs", "bos_Latn"),
    ("ca", "cat_Latn"),
    ("cs", "ces_Latn"),
    ("cy", "cym_Latn"),
    ("da", "dan_Latn"),
    ("de", "deu_Latn"),
    ("el", "ell_Grek"),
    ("en", "eng_Latn"),
    ("eo", "epo_Latn"),
    ("es", "spa_Latn"),
    ("et", "est_Latn"),
    ("eu", "eus_Latn"),
    ("fa", "pes_Arab"),
    ("fi", "fin_Latn"),
    ("fr", "fra_Latn"),
    ("ga", "gle_Latn"),
    ("gl", "glg_Latn"),
    ("gu", "guj_Gujr"),
    ("he", "heb_Hebr"),
    ("hi", "hin_Deva"),
    ("hr", "hrv_Latn"),
    ("hu", "hun_Latn"),
    ("hy", "hye_Armn"),
    ("id", "ind_Latn"),
    ("is", "isl_Latn"),
    ("it", "ita_Latn"),
    ("ja", "jpn_Jpan"),
    ("ka", "kat_Geor"),
    ("kk", "kaz_Cyrl"),
    ("km", "khm_Khmr"),
    ("kn", "kan_Knda"),
    ("ko", "kor_Hang"),
    ("lb", "ltz_Latn"),
    ("lt", "lit_Latn"),
    ("lv", "lvs_Latn"),
    ("mk", "mkd_Cyrl"),
    ("ml", "mal_Mlym"),
    ("mn", "khk_Cyrl"),
    ("mr", "mar_Deva"),
    ("ms", "zsm_Latn"),
    ("my", "mya_Mymr"),
    ("nb", "nob_Latn"),
    ("ne", "npi_Deva"),
    ("nl", "nld_Latn"),
    ("nn", "nno_Latn"),
    ("no", "nob_Latn"),
    ("pa", "pan_Guru"),
    ("pl", "pol_Latn"),
    ("pt", "por_Latn"),
    ("ro", "ron_Latn"),
    ("ru", "rus_Cyrl"),
    ("si", "sin_Sinh"),
    ("sk", "slk_Latn"),
    ("sl", "slv_Latn"),
    ("sq", "als_Latn"),
    ("sr", "srp_Cyrl"),
    ("sv", "swe_Latn"),
    ("sw", "swh_Latn"),
    ("ta", "tam_Taml"),
    ("te", "tel_Telu"),
    ("th", "tha_Thai"),
    ("tl", "tgl_Latn"),
    ("tr", "tur_Latn"),
    ("uk", "ukr_Cyrl"),
    ("ur", "urd_Arab"),
    ("uz", "uzn_Latn"),
    ("vi", "vie_Latn"),
    ("zh", "zho_Hans"),
];

/// Whether `code` is shaped as a FLORES-200 code: three lowercase letters, `_`, a script
/// (`Latn`, `Hans`).
pub fn is_flores_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() == 8
        && bytes[..3].iter().all(u8::is_ascii_lowercase)
        && bytes[3] == b'_'
        && bytes[4].is_ascii_uppercase()
        && bytes[5..].iter().all(u8::is_ascii_lowercase)
}

/// The FLORES-200 code `language` names: itself if it is one, else the code of its language
/// tag (`de-DE` → `deu_Latn`; Chinese by its script or region: `zh-Hant`, `zh-TW`, `zh-HK` →
/// `zho_Hant`); `None` for a tag the table does not hold.
pub fn flores_code(language: &str) -> Option<String> {
    if is_flores_code(language) {
        return Some(language.to_string());
    }
    let lower = language.to_ascii_lowercase();
    let mut subtags = lower.split(['-', '_']);
    let primary = subtags.next()?;
    if primary == "zh" && subtags.any(|s| matches!(s, "hant" | "tw" | "hk" | "mo")) {
        return Some("zho_Hant".into());
    }
    TAGS.iter().find(|(tag, _)| *tag == primary).map(|(_, code)| code.to_string())
}

/// What [`flores_code`] reads, for messages.
pub const NAMED_AS: &str =
    "a FLORES-200 code such as deu_Latn or zho_Hant, or a language tag such as de, pt-BR or zh-TW";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_and_flores_codes_name_flores_codes() {
        for (given, code) in [
            ("deu_Latn", Some("deu_Latn")),
            ("de", Some("deu_Latn")),
            ("de-DE", Some("deu_Latn")),
            ("DE_at", Some("deu_Latn")),
            ("pt-BR", Some("por_Latn")),
            ("zh", Some("zho_Hans")),
            ("zh-CN", Some("zho_Hans")),
            ("zh-Hant-TW", Some("zho_Hant")),
            ("zh-HK", Some("zho_Hant")),
            ("xx", None),
            ("", None),
            ("deu_latn", None),
        ] {
            assert_eq!(flores_code(given).as_deref(), code, "{given}");
        }
        assert!(TAGS.iter().all(|(_, code)| is_flores_code(code)));
        assert!(TAGS.windows(2).all(|pair| pair[0].0 < pair[1].0), "the table is sorted, each tag once");
    }
}
