//! The encoders give the same embeddings as their reference implementations on the same weights
//! and inputs (references written by scripts/make_test_model.py): Hugging Face `transformers`
//! for CLIP and SigLIP, `open-clip-torch` for OpenCLIP checkpoints. Two differently shaped
//! checkpoints per family (activations, patch sizes, widths, epsilons, weight formats,
//! tokenizer kinds and preprocessing all differ).

use crate::common::{cosine, devices, image_path, model_arg, reference, reference_pixels, PARITY_MODELS as MODELS};
use candle_core::Tensor;
use imgsearch::ingest::decode::{decode_file, DecodeOptions, DEFAULT_MAX_PIXELS};
use imgsearch::model::{ModelSpec, Pixels, PreprocessedImage, Towers};
use imgsearch::{Clip, Precision};

const PARITY: f32 = 0.9999;

/// From a JPEG file: the full-size decode (the pure-Rust decoder in every build) differs from
/// libjpeg-turbo's, which the references decoded with, by ±1 in 8 bits (mean 0.1–0.3 of a step,
/// measured by `preprocessing_matches_clip_image_processor`). That moves the most sensitive
/// random fixture (tiny-siglip2-gemma, 16 patches) by up to 1.7e-4; lossless files must reach
/// `PARITY`, and the model itself does on the reference's own pixels.
const JPEG_DECODER_PARITY: f32 = 0.9995;

fn load(model: &str, device: &candle_core::Device) -> Clip {
    Clip::load(&model_arg(model), device).unwrap_or_else(|e| panic!("{model}: {e}"))
}

/// The model's own decoding (its alpha handling) at full size, as the reference decoded.
fn full_size(clip: &Clip) -> DecodeOptions {
    DecodeOptions { min_size: None, ..DecodeOptions::for_model(clip.preprocess_config(), DEFAULT_MAX_PIXELS) }
}

fn to_preprocessed(t: &Tensor) -> PreprocessedImage {
    let (_, h, w) = t.dims3().unwrap();
    PreprocessedImage { pixels: Pixels::Normalized(t.flatten_all().unwrap().to_vec1().unwrap()), height: h, width: w }
}

#[test]
fn token_ids_equal_the_reference_tokenizer() {
    for model in MODELS {
        let reference = reference(model);
        let clip = load(model, &candle_core::Device::Cpu);
        for text in &reference.texts {
            let ids = clip.tokenizer().encode(text).unwrap().ids;
            assert_eq!(ids, reference.token_ids[text], "{model}: token ids of {text:?}");
        }
        let longest = reference.token_ids.values().map(Vec::len).max().unwrap();
        assert_eq!(longest, reference.max_length, "{model}: the fixture must include a text truncated to the context");
    }
}

/// Texts are padded on the side `transformers` takes (each case checked there, `AutoTokenizer`
/// on the same files): `padding_side` of tokenizer_config.json, else the direction of
/// tokenizer.json's padding, else the tokenizer class's own (the left for `GemmaTokenizer`).
#[test]
fn texts_are_padded_on_the_side_transformers_takes() {
    let model = "tiny-siglip2-gemma";
    let reference = reference(model);
    let text = "a photo of a cat";
    let right_padded = reference.token_ids[text].clone();
    let pad = *right_padded.last().unwrap();
    let tokens: Vec<u32> = right_padded.iter().copied().filter(|&id| id != pad).collect();
    let mut left_padded = vec![pad; right_padded.len() - tokens.len()];
    left_padded.extend(tokens);
    // (tokenizer_class, tokenizer.json's padding direction; no padding_side in either case)
    for ((class, direction), expected) in [
        (("GemmaTokenizer", None), &left_padded),
        (("TokenizersBackend", Some("Left")), &left_padded),
        (("GemmaTokenizer", Some("Right")), &right_padded),
    ] {
        let folder = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(crate::common::model_dir(model)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, folder.path().join(path.file_name().unwrap())).unwrap();
        }
        let edit = |file: &str, change: &dyn Fn(&mut serde_json::Value)| {
            let path = folder.path().join(file);
            let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            change(&mut json);
            std::fs::write(&path, json.to_string()).unwrap();
        };
        edit("tokenizer_config.json", &|json| {
            json.as_object_mut().unwrap().remove("padding_side");
            json["tokenizer_class"] = class.into();
        });
        edit("tokenizer.json", &|json| match direction {
            Some(direction) => json["padding"]["direction"] = direction.into(),
            None => json["padding"] = serde_json::Value::Null,
        });
        let clip = Clip::load(folder.path().to_str().unwrap(), &candle_core::Device::Cpu).unwrap();
        assert_eq!(&clip.tokenizer().encode(text).unwrap().ids, expected, "{class}, tokenizer.json {direction:?}");
    }
}

#[test]
fn text_embeddings_match_the_reference() {
    for device in devices() {
        for model in MODELS {
            let reference = reference(model);
            let clip = load(model, &device);
            let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
            // All at once (a padded batch of mixed lengths) and one by one must both match.
            let batched = clip.embed_texts(&texts).unwrap();
            for (text, got) in texts.iter().zip(&batched) {
                assert_eq!(got.len(), reference.dim);
                let single = &clip.embed_texts(&[text]).unwrap()[0];
                for (how, e) in [("batched", got), ("alone", single)] {
                    let c = cosine(e, &reference.text_embeds[*text]);
                    assert!(c >= PARITY, "{model} on {device:?}: text {text:?} ({how}) cosine {c}");
                }
            }
        }
    }
}

/// A batch of pictures as bytes (how `index` hands them over) is normalised on the device that
/// runs the tower; that must give what the same values normalised beforehand give: to the bit on
/// the CPU, within a GPU's fused multiply-add elsewhere.
#[test]
fn pictures_normalised_on_the_device_equal_those_normalised_before() {
    for device in devices() {
        let clip = load(MODELS[0], &device);
        let decoded = decode_file(&image_path("coffee.png"), &full_size(&clip)).unwrap();
        let as_bytes = clip.preprocess_config().apply(&decoded.rgb);
        assert!(matches!(as_bytes.pixels, Pixels::Bytes { .. }));
        let normalized = PreprocessedImage { pixels: Pixels::Normalized(as_bytes.normalized()), ..as_bytes.clone() };
        let other =
            clip.preprocess_config().apply(&decode_file(&image_path("rocket.jpg"), &full_size(&clip)).unwrap().rgb);
        let other_normalized = PreprocessedImage { pixels: Pixels::Normalized(other.normalized()), ..other.clone() };
        let got = clip.embed_images(&[as_bytes, other]).unwrap();
        let expected = clip.embed_images(&[normalized, other_normalized]).unwrap();
        if device.is_cpu() {
            assert_eq!(got, expected);
        } else {
            for (g, e) in got.iter().zip(&expected) {
                assert!(cosine(g, e) >= 0.99999, "{device:?}: cosine {}", cosine(g, e));
            }
        }
    }
}

#[test]
fn image_embeddings_from_reference_pixels_match() {
    for device in devices() {
        for model in MODELS {
            let reference = reference(model);
            let clip = load(model, &device);
            let pixels = reference_pixels(model);
            let names: Vec<&String> = pixels.keys().collect();
            let batch: Vec<PreprocessedImage> = names.iter().map(|n| to_preprocessed(&pixels[*n])).collect();
            let embeddings = clip.embed_images(&batch).unwrap();
            let mut worst = f32::MAX;
            for (name, got) in names.iter().zip(&embeddings) {
                let c = cosine(got, &reference.image_embeds[*name]);
                assert!(c >= PARITY, "{model} on {device:?}: {name} cosine {c}");
                worst = worst.min(c);
            }
            let amx = imgsearch::model::kernels::amx::available();
            eprintln!("{model} on {device:?} (AMX three-way split: {amx}): worst image cosine {worst:.7}");
        }
    }
}

#[test]
fn preprocessing_matches_clip_image_processor() {
    for model in MODELS {
        let clip = load(model, &candle_core::Device::Cpu);
        for (name, expected) in reference_pixels(model) {
            let decoded = decode_file(&image_path(&name), &full_size(&clip)).unwrap();
            let got = clip.preprocess_config().apply(&decoded.rgb);
            let expected = to_preprocessed(&expected);
            assert_eq!((got.height, got.width), (expected.height, expected.width), "{model}: {name}");
            // Allow one 8-bit step (the JPEG IDCTs of libjpeg-turbo and Rust differ by ±1) divided by the smallest std.
            let std_min = clip.preprocess_config().image_std.iter().cloned().fold(f32::MAX, f32::min);
            let step = 1.0 / 255.0 / std_min;
            let diffs: Vec<f32> =
                got.normalized().iter().zip(&expected.normalized()).map(|(a, b)| (a - b).abs()).collect();
            let max = diffs.iter().cloned().fold(0.0, f32::max);
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            eprintln!("{model}: {name}: max |diff| {max:.4} ({:.1} steps), mean {:.4} steps", max / step, mean / step);
            assert!(mean <= 0.5 * step, "{model}: {name}: mean |diff| {mean} over half an 8-bit step");
            if !name.ends_with(".jpg") {
                // Lossless files decode exactly as Pillow does, so only the resize's rounding is
                // left: a value one step off here and there (its passes in another order made
                // 7-15% of the values one step off).
                assert!(max <= step * 1.001, "{model}: {name}: a value {:.2} steps off Pillow's", max / step);
                assert!(mean <= 0.03 * step, "{model}: {name}: mean |diff| {:.3} steps from Pillow's", mean / step);
            }
        }
    }
}

#[test]
fn image_embeddings_from_files_match_the_reference() {
    for device in devices() {
        for model in MODELS {
            let reference = reference(model);
            let clip = load(model, &device);
            for (name, expected) in &reference.image_embeds {
                let decoded = decode_file(&image_path(name), &full_size(&clip)).unwrap();
                let got = clip.embed_images(&[clip.preprocess_config().apply(&decoded.rgb)]).unwrap();
                let c = cosine(&got[0], expected);
                let bound = if name.ends_with(".jpg") { JPEG_DECODER_PARITY } else { PARITY };
                assert!(c >= bound, "{model} on {device:?}: {name} end-to-end cosine {c}");
            }
        }
    }
}

#[test]
fn the_fixture_models_tell_pictures_and_texts_apart() {
    // Guards the test itself: parity at 0.9999 only means something if different inputs are far apart.
    for model in MODELS {
        let reference = reference(model);
        let cat = &reference.text_embeds["a photo of a cat"];
        let city = &reference.text_embeds["satellite image of a city at night"];
        assert!(cosine(cat, city) < 0.99);
        let rocket = &reference.image_embeds["rocket.jpg"];
        let coffee = &reference.image_embeds["coffee.png"];
        assert!(cosine(rocket, coffee) < 0.99);
    }
}

/// How close `--dtype bf16` (bf16 weights and layer inputs, f32 sums) must stay to the f32
/// reference. bf16 keeps 8 bits of mantissa: per-layer rounding of ~0.4% adds up over the towers.
const BF16_PARITY: f32 = 0.999;

#[test]
fn bf16_embeddings_stay_close_to_the_reference() {
    let cpu = candle_core::Device::Cpu;
    for model in MODELS {
        let spec = ModelSpec::resolve(&model_arg(model)).unwrap().with_precision(Precision::Bf16);
        let clip = match spec.load(&cpu, Towers::Both) {
            Ok(clip) => clip,
            Err(e) => {
                // Without AMX or AVX512_BF16 the precision must be refused with a way out, not
                // run slowly.
                assert!(imgsearch::model::kernels::bf16_layout().is_none(), "{model}: bf16 failed to load: {e}");
                assert!(e.to_string().contains("--dtype f32"), "unhelpful error: {e}");
                continue;
            }
        };
        let reference = reference(model);
        let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
        let mut worst = f32::MAX;
        for (text, got) in texts.iter().zip(clip.embed_texts(&texts).unwrap()) {
            worst = worst.min(cosine(&got, &reference.text_embeds[*text]));
        }
        let pixels = reference_pixels(model);
        let names: Vec<&String> = pixels.keys().collect();
        let batch: Vec<PreprocessedImage> = names.iter().map(|n| to_preprocessed(&pixels[*n])).collect();
        for (name, got) in names.iter().zip(clip.embed_images(&batch).unwrap()) {
            worst = worst.min(cosine(&got, &reference.image_embeds[*name]));
        }
        eprintln!("{model}: bf16 worst cosine to the f32 reference {worst:.5}");
        assert!(worst >= BF16_PARITY, "{model}: bf16 cosine {worst} below {BF16_PARITY}");
    }
}

#[test]
fn siglip_probabilities_match_siglip_model() {
    let mut checked = 0;
    for model in MODELS {
        let reference = reference(model);
        let clip = load(model, &candle_core::Device::Cpu);
        let Some(score) = clip.sigmoid_score() else {
            assert!(reference.probs.is_empty(), "{model}: the reference has probabilities, the model none");
            continue;
        };
        for (text, by_image) in &reference.probs {
            for (image, expected) in by_image {
                let cos = cosine(&reference.text_embeds[text], &reference.image_embeds[image]);
                let got = score.probability(cos);
                assert!(
                    (got - expected).abs() <= 1e-5 + 1e-3 * expected,
                    "{model}: p({text:?}, {image}) {got} vs {expected}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no SigLIP fixture checked");
}

/// NLLB-CLIP reads a text after its language's code: each (text, language) of the fixture gives
/// open_clip's token ids and embedding with that language set, by its FLORES-200 code or its
/// language tag. A tokenizer without language codes reads every text alike, whatever it is told.
#[test]
fn texts_read_in_their_language_match_open_clip() {
    let model = "tiny-openclip-nllb";
    let path = crate::common::fixtures().join(format!("reference/{model}_languages.json"));
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let clip = load(model, &candle_core::Device::Cpu);
    assert!(clip.tokenizer().reads_language());
    let tags = [("deu_Latn", "de-AT"), ("fra_Latn", "fr"), ("zho_Hans", "zh-CN")];
    for (code, tag) in tags {
        let expected = &reference["languages"][code];
        for (text, ids) in expected["token_ids"].as_object().unwrap() {
            let ids: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
            assert_eq!(clip.tokenizer().encode_in(text, Some(code)).unwrap().ids, ids, "{code}: {text}");
            let embedding: Vec<f32> = serde_json::from_value(expected["text_embeds"][text].clone()).unwrap();
            for language in [code, tag] {
                let got = &clip.embed_texts_in(&[text], Some(language)).unwrap()[0];
                let c = cosine(got, &embedding);
                assert!(c >= PARITY, "{text:?} read as {language}: cosine {c}");
            }
        }
    }
    // Read as English (the tokenizer's default), the same words embed elsewhere.
    let english = &clip.embed_texts(&["a photo of a cat"]).unwrap()[0];
    let german: Vec<f32> =
        serde_json::from_value(reference["languages"]["deu_Latn"]["text_embeds"]["a photo of a cat"].clone()).unwrap();
    assert!(cosine(english, &german) < 0.99);
    for unknown in ["tlh_Latn", "klingon"] {
        let err = clip.tokenizer().encode_in("a cat", Some(unknown)).unwrap_err().to_string();
        assert!(err.contains(unknown) && err.contains("deu_Latn"), "{err}");
    }
    let xlmr = load("tiny-openclip-xlmr", &candle_core::Device::Cpu);
    assert!(!xlmr.tokenizer().reads_language());
    for language in ["deu_Latn", "klingon"] {
        assert_eq!(
            xlmr.tokenizer().encode_in("a cat", Some(language)).unwrap(),
            xlmr.tokenizer().encode("a cat").unwrap()
        );
    }
}
