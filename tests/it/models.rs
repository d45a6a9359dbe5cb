//! Each model family through the real binary: a library indexed with SigLIP shows the model's
//! probabilities and cuts on them, one indexed from a bare OpenCLIP state dict reopens from what
//! it recorded, and the layouts imgsearch cannot run fail with errors that say why.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{image_path, model_arg, model_dir, reference};
use serde_json::Value;

fn imgsearch(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    cmd.args(common::library_args(data)).args(["--device", "cpu"]);
    cmd
}

fn json(out: Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Lossless fixture photos (decoded exactly as the references were), indexed with `model`.
fn library(model: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for name in ["coffee.png", "camera_gray.png", "astronaut_palette.png", "chelsea_alpha.png"] {
        std::fs::copy(image_path(name), photos.join(name)).unwrap();
    }
    let data = tmp.path().join("data");
    let out = imgsearch(&data).arg("index").arg(&photos).args(model).arg("--quiet").output().unwrap();
    assert!(out.status.success(), "index: {}", String::from_utf8_lossy(&out.stderr));
    (tmp, data)
}

fn file_name(hit: &Value) -> String {
    Path::new(hit["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_siglip_library_shows_the_models_probabilities_and_cuts_on_them() {
    let model = "tiny-siglip2-gemma";
    let reference = reference(model);
    let (_tmp, data) = library(&["--model", &model_arg(model)]);
    let text = "satellite image of a city at night";
    let hits = json(imgsearch(&data).args(["search", text, "--json"]).output().unwrap());
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 4);
    for hit in hits {
        let expected = reference.probs[text][&file_name(hit)];
        let prob = hit["prob"].as_f64().unwrap() as f32;
        // The stored picture embeddings are within cosine 1e-5 of the reference, which the
        // probability's scale (exp(logit_scale) ≈ 10) turns into ~1e-4.
        assert!((prob - expected).abs() <= 1e-3, "{hit}: SiglipModel says {expected}");
    }
    // A cut between the best and the second best probability keeps exactly the best.
    let (best, second) = (hits[0]["prob"].as_f64().unwrap(), hits[1]["prob"].as_f64().unwrap());
    assert!(best > second, "the fixture must rank with distinct probabilities: {hits:?}");
    let cut = format!("{}", (best + second) / 2.0);
    let kept = json(imgsearch(&data).args(["search", text, "--json", "--min-prob", &cut]).output().unwrap());
    assert_eq!(kept.as_array().unwrap().len(), 1, "{kept}");
    assert_eq!(kept[0]["path"], hits[0]["path"]);
    // Text output shows it too; a picture query has no calibrated probability.
    let out = imgsearch(&data).args(["search", text]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("p="), "{}", String::from_utf8_lossy(&out.stdout));
    let by_picture =
        json(imgsearch(&data).args(["search", "--json", "--image"]).arg(image_path("coffee.png")).output().unwrap());
    assert!(by_picture[0].get("prob").is_none(), "{by_picture}");
    // Nor does a mix of texts; one text of any weight keeps its probabilities.
    let weighted = json(imgsearch(&data).args(["search", &format!("3:{text}"), "--json"]).output().unwrap());
    assert_eq!(weighted[0]["prob"], hits[0]["prob"], "{weighted}");
    let mixed = json(imgsearch(&data).args(["search", &format!("{text} -people"), "--json"]).output().unwrap());
    assert!(mixed[0].get("prob").is_none(), "{mixed}");
    let out = imgsearch(&data).args(["search", &format!("{text} -people"), "--min-prob", "0.5"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("mixes texts"), "{out:?}");
    let refused = imgsearch(&data).args(["search", "--min-prob", "1.5", text]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("from 0 to 1"));
}

/// SigLIP 2's Gemma tokenizer reads two spaces or a tab apart from one space: a search embeds
/// its text as written, as `embed` and the reference do, not with the whitespace collapsed.
#[test]
fn a_search_embeds_its_text_with_the_whitespace_as_written() {
    let model = model_arg("tiny-siglip2-gemma");
    let (tmp, data) = library(&["--model", &model]);
    let (spaced, collapsed) = ("a  red\tcar", "a red car");
    let embed = json(
        imgsearch(&data)
            .args(["embed", "--json", "--text", spaced, "--text", collapsed, "--model", &model])
            .output()
            .unwrap(),
    );
    assert_ne!(embed["texts"][spaced], embed["texts"][collapsed], "the tokenizer reads the two texts alike");
    let file = tmp.path().join("spaced.json");
    std::fs::write(&file, serde_json::to_vec(&embed["texts"][spaced]).unwrap()).unwrap();
    let search = |args: &[&std::ffi::OsStr]| -> Vec<(String, f64)> {
        let hits = json(imgsearch(&data).arg("search").args(args).args(["-k", "4", "--json"]).output().unwrap());
        hits.as_array().unwrap().iter().map(|hit| (file_name(hit), hit["score"].as_f64().unwrap())).collect()
    };
    let by_vector = search(&["--vector".as_ref(), file.as_os_str()]);
    let by_text = search(&[format!(" {spaced} ").as_ref()]);
    assert_eq!(by_text.len(), by_vector.len());
    for (a, b) in by_text.iter().zip(&by_vector) {
        assert!(a.0 == b.0 && (a.1 - b.1).abs() < 1e-5, "{a:?} {b:?}");
    }
}

#[test]
fn min_prob_on_a_clip_library_says_to_use_min_score() {
    let (_tmp, data) = library(&["--model", &model_arg("tiny-clip-b32-quickgelu")]);
    let hits = json(imgsearch(&data).args(["search", "a photo of a cat", "--json"]).output().unwrap());
    assert!(hits[0].get("prob").is_none(), "CLIP scores are cosines only: {hits}");
    let out = imgsearch(&data).args(["search", "a photo of a cat", "--min-prob", "0.5"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("min_score") && stderr.contains("SigLIP"), "{stderr}");
}

/// A bare OpenCLIP state dict with its architecture (`--arch`): the library records both, so
/// `search` reopens the same model with no flags, and its text embeddings equal open_clip's.
#[test]
fn a_bare_openclip_state_dict_indexes_and_reopens_from_what_the_library_recorded() {
    let model = "tiny-openclip-p16-gelu";
    let dir = model_dir(model);
    let weights = dir.join(format!("{model}.pt"));
    let arch = dir.join("arch.json");
    let (_tmp, data) = library(&["--model", weights.to_str().unwrap(), "--arch", arch.to_str().unwrap()]);
    let stats = json(imgsearch(&data).args(["stats", "--json"]).output().unwrap());
    let recorded = stats["model"]["model"].as_str().unwrap();
    assert!(recorded.ends_with("arch.json") && recorded.contains(".pt#"), "{stats}");
    let hits = json(imgsearch(&data).args(["search", "a photo of a cat", "--json"]).output().unwrap());
    assert_eq!(hits.as_array().unwrap().len(), 4);

    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["embed", "--device", "cpu", "--json", "--text", "ein Foto von einer Katze am Strand, über den Dächern"])
        .args(["--model", weights.to_str().unwrap(), "--arch", arch.to_str().unwrap()])
        .output()
        .unwrap();
    let got: Vec<f32> = json(out)["texts"]["ein Foto von einer Katze am Strand, über den Dächern"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let expected = &reference(model).text_embeds["ein Foto von einer Katze am Strand, über den Dächern"];
    assert!(common::cosine(&got, expected) >= 0.9999);
}

/// open_clip takes image and patch sizes as one number or as (height, width): the same
/// architecture written with pairs embeds pictures as the reference does, and a pair that is not
/// square is refused by name.
#[test]
fn an_openclip_architecture_may_give_its_sizes_as_pairs() {
    let model = "tiny-openclip-p16-gelu";
    let dir = model_dir(model);
    let weights = dir.join(format!("{model}.pt"));
    let tmp = tempfile::tempdir().unwrap();
    let arch_with = |image_size: Value| {
        let mut arch: Value = serde_json::from_slice(&std::fs::read(dir.join("arch.json")).unwrap()).unwrap();
        let side = arch["vision_cfg"]["patch_size"].clone();
        arch["vision_cfg"]["patch_size"] = serde_json::json!([side, side]);
        arch["vision_cfg"]["image_size"] = image_size;
        let path = tmp.path().join(format!("arch-{}.json", arch["vision_cfg"]["image_size"]));
        std::fs::write(&path, arch.to_string()).unwrap();
        path
    };
    let embed = |arch: &Path| {
        Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .args(["embed", "--device", "cpu", "--json", "--image", image_path("coffee.png").to_str().unwrap()])
            .args(["--model", weights.to_str().unwrap(), "--arch", arch.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = json(embed(&arch_with(serde_json::json!([64, 64]))));
    let got: Vec<f32> = out["images"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert!(common::cosine(&got, &reference(model).image_embeds["coffee.png"]) >= 0.9999);
    let refused = embed(&arch_with(serde_json::json!([64, 48])));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("only square sizes"), "{stderr}");
}

/// `final_ln_after_pool` changes nothing where a tower pools by picking one token (the only
/// poolings imgsearch runs): such a checkpoint embeds as the reference does without it. It used
/// to be refused.
#[test]
fn an_openclip_option_that_changes_nothing_for_its_pooling_is_accepted() {
    let model = "tiny-openclip-b32-quickgelu";
    let tmp = tempfile::tempdir().unwrap();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(model_dir(model).join("open_clip_config.json")).unwrap()).unwrap();
    for tower in ["vision_cfg", "text_cfg"] {
        config["model_cfg"][tower]["final_ln_after_pool"] = true.into();
    }
    std::fs::write(tmp.path().join("open_clip_config.json"), config.to_string()).unwrap();
    std::fs::copy(model_dir(model).join("open_clip_model.safetensors"), tmp.path().join("open_clip_model.safetensors"))
        .unwrap();
    let reference = reference(model);
    let text = reference.text_embeds.keys().next().unwrap().clone();
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
        .args(["embed", "--device", "cpu", "--json", "--image", image_path("coffee.png").to_str().unwrap()])
        .args(["--text", &text, "--model", tmp.path().to_str().unwrap()])
        .output()
        .unwrap();
    let out = json(out);
    let vector = |v: &Value| -> Vec<f32> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    let image = vector(out["images"].as_object().unwrap().values().next().unwrap());
    assert!(common::cosine(&image, &reference.image_embeds["coffee.png"]) >= 0.9999);
    assert!(common::cosine(&vector(&out["texts"][&text]), &reference.text_embeds[&text]) >= 0.9999);
}

#[test]
fn checkpoints_that_cannot_run_fail_saying_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let embed = |model: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_imgsearch"))
            .args(["embed", "--device", "cpu", "--text", "x", "--model", model])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{model} should not load");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // A bare state dict whose name says nothing of its architecture.
    let bare = tmp.path().join("weights.pt");
    std::fs::copy(model_dir("tiny-openclip-p16-gelu").join("tiny-openclip-p16-gelu.pt"), &bare).unwrap();
    let stderr = embed(bare.to_str().unwrap(), &[]);
    assert!(stderr.contains("--arch") && stderr.contains("ViT-B-32"), "{stderr}");
    let stderr = embed(bare.to_str().unwrap(), &["--arch", "ViT-Q-99"]);
    assert!(stderr.contains("ViT-Q-99") && stderr.contains("ViT-L-14"), "{stderr}");
    // A named architecture whose shapes do not fit the weights, given or read from the file name.
    let stderr = embed(bare.to_str().unwrap(), &["--arch", "ViT-B-32"]);
    assert!(stderr.contains("shape"), "{stderr}");
    let named = tmp.path().join("RemoteCLIP-ViT-B-32.pt");
    std::fs::copy(&bare, &named).unwrap();
    let stderr = embed(named.to_str().unwrap(), &[]);
    assert!(stderr.contains("shape") && !stderr.contains("--arch"), "the name's ViT-B-32 was not used: {stderr}");
    // A ResNet's name (RemoteCLIP-RN50.pt) names RN50, whose shapes the tiny ResNet's are not.
    let resnet = tmp.path().join("RemoteCLIP-RN50.pt");
    std::fs::copy(model_dir("tiny-openclip-rn-gelu").join("tiny-openclip-rn-gelu.pt"), &resnet).unwrap();
    let stderr = embed(resnet.to_str().unwrap(), &[]);
    assert!(stderr.contains("shape") && !stderr.contains("--arch"), "the name's RN50 was not used: {stderr}");

    // A NaFlex SigLIP 2 whose positions make no square, an unknown model type, and an OpenCLIP
    // tower built from timm.
    let folder = |name: &str, file: &str, content: Value| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.safetensors", "tokenizer.json"] {
            std::fs::copy(model_dir("tiny-siglip-sp").join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join(file), content.to_string()).unwrap();
        dir.to_str().unwrap().to_string()
    };
    let naflex = serde_json::json!({"model_type": "siglip2", "vision_config": {"num_patches": 200}});
    let naflex = folder("naflex", "config.json", naflex);
    assert!(embed(&naflex, &[]).contains("num_patches 200 is not a square grid"));
    let bert = folder("bert", "config.json", serde_json::json!({"model_type": "bert"}));
    assert!(embed(&bert, &[]).contains("\"bert\" is not supported"));
    let timm = folder(
        "timm",
        "open_clip_config.json",
        serde_json::json!({"model_cfg": {"embed_dim": 8, "vision_cfg": {"timm_model_name": "vit_so400m"}, "text_cfg": {}}}),
    );
    std::fs::copy(
        model_dir("tiny-siglip-sp").join("model.safetensors"),
        Path::new(&timm).join("open_clip_model.safetensors"),
    )
    .unwrap();
    std::fs::remove_file(Path::new(&timm).join("model.safetensors")).unwrap();
    let stderr = embed(&timm, &[]);
    assert!(stderr.contains("timm_model_name") && stderr.contains("google/siglip2-"), "{stderr}");

    // A tiny OpenCLIP checkpoint whose options change its tokenizer or a tower.
    let openclip = model_dir("tiny-openclip-b32-quickgelu");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(openclip.join("open_clip_config.json")).unwrap()).unwrap();
    for (tower, option, value, says) in [
        ("text_cfg", "tokenizer_kwargs", serde_json::json!({"clean": "whitespace"}), "tokenizer_kwargs"),
        // OpenCLIP's own text transformer with a Hugging Face tokenizer (hf_model_name runs).
        ("text_cfg", "hf_tokenizer_name", serde_json::json!("xlm-roberta-base"), "hf_tokenizer_name"),
        ("vision_cfg", "attentional_pool", serde_json::json!("parallel"), "attentional_pool"),
        ("vision_cfg", "pool_type", serde_json::json!("none"), "pool_type"),
        // CLIPA's text tower needs its own tokenizer and pooling.
        ("text_cfg", "no_causal_mask", serde_json::json!(true), "no_causal_mask"),
    ] {
        let mut changed = config.clone();
        changed["model_cfg"][tower][option] = value;
        let dir = folder(option, "open_clip_config.json", changed);
        std::fs::remove_file(Path::new(&dir).join("model.safetensors")).unwrap();
        std::fs::copy(
            openclip.join("open_clip_model.safetensors"),
            Path::new(&dir).join("open_clip_model.safetensors"),
        )
        .unwrap();
        let stderr = embed(&dir, &[]);
        assert!(stderr.contains(says) && stderr.contains("not supported"), "{option}: {stderr}");
    }

    // An OpenCLIP SigLIP whose options leave SigLIP's towers.
    let siglip = model_dir("tiny-openclip-siglip");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(siglip.join("open_clip_config.json")).unwrap()).unwrap();
    for (tower, option, value, says) in [
        ("vision_cfg", "timm_pool", serde_json::json!("avg"), "timm_pool"),
        ("vision_cfg", "timm_proj", serde_json::Value::Null, "timm_proj"),
        ("vision_cfg", "timm_model_kwargs", serde_json::json!({"class_token": true}), "timm_model_kwargs"),
        ("vision_cfg", "image_size", serde_json::json!(224), "img_size"),
        ("text_cfg", "no_causal_mask", serde_json::json!(false), "no_causal_mask"),
        ("text_cfg", "proj_bias", serde_json::json!(false), "proj_bias"),
        ("text_cfg", "hf_tokenizer_name", serde_json::Value::Null, "hf_tokenizer_name"),
        ("text_cfg", "tokenizer_kwargs", serde_json::json!({"clean": "shout"}), "tokenizer_kwargs"),
    ] {
        let mut changed = config.clone();
        changed["model_cfg"][tower][option] = value;
        let dir = tmp.path().join(format!("siglip-{option}"));
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["open_clip_model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(siglip.join(file), dir.join(file)).unwrap();
        }
        std::fs::write(dir.join("open_clip_config.json"), changed.to_string()).unwrap();
        let stderr = embed(dir.to_str().unwrap(), &[]);
        assert!(stderr.contains(says), "{option}: {stderr}");
    }
}

#[test]
fn models_lists_the_families_and_recommendations_with_their_sizes() {
    let out = Command::new(env!("CARGO_BIN_EXE_imgsearch")).args(["models", "--json"]).output().unwrap();
    let listing = json(out);
    let families: Vec<&str> =
        listing["families"].as_array().unwrap().iter().map(|f| f["family"].as_str().unwrap()).collect();
    assert_eq!(families, ["clip", "siglip", "openclip"]);
    let recommended = listing["recommended"].as_array().unwrap();
    let default = recommended.iter().find(|r| r["model"] == imgsearch::DEFAULT_MODEL).unwrap();
    assert_eq!(default["parameters"], 151_277_313, "{default}");
    assert!(recommended.iter().any(|r| r["family"] == "siglip"));
    assert!(recommended.iter().any(|r| r["need"].as_str().unwrap().contains("satellite")));
    let text = Command::new(env!("CARGO_BIN_EXE_imgsearch")).arg("models").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("ViT-L-14") && text.contains("google/siglip2-base-patch16-224"), "{text}");
}
