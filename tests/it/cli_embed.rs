//! `imgsearch embed` through the real binary: local checkpoints, a hub id served by a stand-in
//! hub on 127.0.0.1, offline mode, and clear failures.

use std::process::{Command, Output};

use crate::common::hub::{files_under, Behaviour, StandInHub};
use crate::common::{cosine, image_path, model_dir, reference};
use serde_json::Value;

fn imgsearch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgsearch"));
    // Never touch the developer's real cache or the network.
    cmd.env_remove("HF_ENDPOINT").env_remove("HF_HUB_OFFLINE").env("HF_HOME", "/nonexistent-imgsearch-test");
    cmd
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "exit {:?}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn embed_prints_normalised_embeddings_equal_to_the_reference() {
    let model = "tiny-clip-p14-gelu";
    let reference = reference(model);
    let (rocket, coffee) = (image_path("rocket.jpg"), image_path("coffee.png"));
    let out = imgsearch()
        .args(["embed", "--device", "cpu", "--json", "--model"])
        .arg(model_dir(model))
        .arg("--image")
        .arg(&rocket)
        .arg("--image")
        .arg(&coffee)
        .args(["--text", "", "--text", "a photo of a cat"])
        .output()
        .unwrap();
    let json = json_of(&out);
    assert_eq!(json["dim"], reference.dim);
    let image = vector(&json["images"][rocket.to_str().unwrap()]);
    let norm: f32 = image.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "not L2-normalised: {norm}");
    // A large-enough JPEG takes the scaled-decode fast path (within 0.995 of exact by design);
    // a PNG takes the exact path, which matches the reference.
    assert!(cosine(&image, &reference.image_embeds["rocket.jpg"]) >= 0.995);
    let exact = vector(&json["images"][coffee.to_str().unwrap()]);
    assert!(cosine(&exact, &reference.image_embeds["coffee.png"]) >= 0.9999);
    for text in ["", "a photo of a cat"] {
        let got = vector(&json["texts"][text]);
        assert!(cosine(&got, &reference.text_embeds[text]) >= 0.9999, "text {text:?}");
    }
}

/// Each lower kernel path, forced with IMGSEARCH_ISA as it runs on CPUs that have nothing better
/// (the other tests run this machine's best), matches the reference in f32; below AVX512_BF16
/// and AMX, `--dtype bf16` is refused with a way out, and `--dtype f16` everywhere on a CPU. (A
/// path above this CPU's is ignored.)
#[test]
fn embed_on_every_lower_kernel_path_matches_the_reference_and_bf16_needs_its_own() {
    let model = "tiny-clip-p14-gelu";
    let reference = reference(model);
    let coffee = image_path("coffee.png");
    let run = |isa: &str, dtype: &str| {
        imgsearch()
            .env("IMGSEARCH_ISA", isa)
            .args(["embed", "--device", "cpu", "--dtype", dtype, "--json", "--model"])
            .arg(model_dir(model))
            .arg("--image")
            .arg(&coffee)
            .args(["--text", "a photo of a cat"])
            .output()
            .unwrap()
    };
    for isa in ["avx512", "avx2", "portable"] {
        let json = json_of(&run(isa, "f32"));
        let image = vector(&json["images"][coffee.to_str().unwrap()]);
        assert!(cosine(&image, &reference.image_embeds["coffee.png"]) >= 0.9999, "{isa}");
        let text = vector(&json["texts"]["a photo of a cat"]);
        assert!(cosine(&text, &reference.text_embeds["a photo of a cat"]) >= 0.9999, "{isa}");
    }
    let refused = run("avx512", "bf16");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("AVX512_BF16") && stderr.contains("--dtype f32"), "unclear error: {stderr}");
    // f16 is a GPU format: refused on every CPU, with the formats that do run there.
    let refused = run("avx512", "f16");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CUDA") && stderr.contains("--dtype bf16"), "unclear error: {stderr}");
}

#[test]
fn embed_with_dtype_bf16_stays_close_to_the_reference_or_is_refused_clearly() {
    let model = "tiny-clip-b32-quickgelu";
    let reference = reference(model);
    let coffee = image_path("coffee.png");
    let out = imgsearch()
        .args(["embed", "--device", "cpu", "--dtype", "bf16", "--json", "--model"])
        .arg(model_dir(model))
        .arg("--image")
        .arg(&coffee)
        .args(["--text", "a photo of a cat"])
        .output()
        .unwrap();
    if imgsearch::model::kernels::bf16_layout().is_none() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("AVX512_BF16") && stderr.contains("--dtype f32"), "unclear error: {stderr}");
        return;
    }
    let json = json_of(&out);
    let image = vector(&json["images"][coffee.to_str().unwrap()]);
    let text = vector(&json["texts"]["a photo of a cat"]);
    let (image_cos, text_cos) = (
        cosine(&image, &reference.image_embeds["coffee.png"]),
        cosine(&text, &reference.text_embeds["a photo of a cat"]),
    );
    assert!(image_cos >= 0.999 && text_cos >= 0.999, "bf16 cosines: image {image_cos}, text {text_cos}");
    // It really ran in bf16: an f32 run matches the reference to 0.9999, bf16 rounding shows.
    assert!(image_cos < 0.999999 || text_cos < 0.999999, "bf16 gave f32's exact embeddings");
}

#[test]
fn embed_fails_clearly_on_a_missing_or_undecodable_picture() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("notes.jpg");
    std::fs::write(&garbage, b"this is not a jpeg").unwrap();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    for (path, expect) in [(dir.path().join("missing.jpg"), "missing.jpg"), (garbage, "notes.jpg"), (empty, "empty")] {
        let out = imgsearch()
            .args(["embed", "--device", "cpu", "--json", "--model"])
            .arg(model_dir("tiny-clip-b32-quickgelu"))
            .arg("--image")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expect) && !stderr.contains("panicked"), "unclear error: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn embed_fails_clearly_on_a_folder_that_is_not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = imgsearch().args(["embed", "--text", "x", "--model"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("config.json"), "{stderr}");
}

/// Weights that make no direction (a NaN in a layer norm) are an error, not NaN embeddings that
/// would be stored and match nothing.
#[test]
fn a_checkpoint_that_computes_nan_is_refused_with_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "preprocessor_config.json", "tokenizer.json"] {
        std::fs::copy(model_dir("tiny-clip-b32-quickgelu").join(file), dir.path().join(file)).unwrap();
    }
    let weights = model_dir("tiny-clip-b32-quickgelu").join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let norm = tensors.get_mut("text_model.final_layer_norm.weight").unwrap();
    *norm = (norm.clone() * f64::NAN).unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let out =
        imgsearch().args(["embed", "--device", "cpu", "--text", "a cat", "--model"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NaN") && stderr.contains("weights"), "{stderr}");
}

/// A tokenizer whose ids run past the model's token table (another model's tokenizer) is refused
/// when the model loads, naming both sizes, not at the first search.
#[test]
fn a_tokenizer_of_another_vocabulary_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let source = model_dir("tiny-clip-b32-quickgelu");
    for file in ["preprocessor_config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(source.join(file), dir.path().join(file)).unwrap();
    }
    let mut config: Value = serde_json::from_slice(&std::fs::read(source.join("config.json")).unwrap()).unwrap();
    config["text_config"]["vocab_size"] = 1000.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = imgsearch()
        .args(["embed", "--device", "cpu", "--image"])
        .arg(image_path("rocket.jpg"))
        .arg("--model")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("vocab_size 1000"), "{stderr}");
}

#[test]
fn a_hub_model_is_downloaded_once_then_works_offline() {
    let model = "tiny-clip-b32-quickgelu";
    let reference = reference(model);
    let hf_home = tempfile::tempdir().unwrap();
    let run = |endpoint: Option<&str>, offline: bool| {
        let mut cmd = imgsearch();
        cmd.env("HF_HOME", hf_home.path()).args([
            "embed",
            "--device",
            "cpu",
            "--json",
            "--model",
            "test-org/tiny-clip",
            "--text",
            "a photo of a cat",
        ]);
        if let Some(endpoint) = endpoint {
            cmd.env("HF_ENDPOINT", endpoint);
        }
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        cmd.output().unwrap()
    };

    let hub = StandInHub::serve("test-org/tiny-clip", model_dir(model));
    let json = json_of(&run(Some(&hub.endpoint), false));
    assert!(cosine(&vector(&json["texts"]["a photo of a cat"]), &reference.text_embeds["a photo of a cat"]) >= 0.9999);
    let fetched = hub.downloads.load(std::sync::atomic::Ordering::SeqCst);
    assert!(fetched >= 3, "config, tokenizer and weights should have been downloaded, got {fetched}");
    assert!(hf_home.path().join("hub/models--test-org--tiny-clip").is_dir(), "the standard hub cache layout is used");

    // A second run is served from the cache: no more downloads.
    json_of(&run(Some(&hub.endpoint), false));
    assert_eq!(hub.downloads.load(std::sync::atomic::Ordering::SeqCst), fetched);
    // Processes that find the cache complete at once each record the revision again: none sees,
    // or leaves, a file half made.
    for _ in 0..5 {
        let outputs: Vec<Output> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..4).map(|_| scope.spawn(|| run(Some(&hub.endpoint), false))).collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        outputs.iter().for_each(|out| drop(json_of(out)));
    }
    assert_eq!(hub.downloads.load(std::sync::atomic::Ordering::SeqCst), fetched);
    drop(hub);

    // Offline, with the hub gone, the cached copy is enough.
    json_of(&run(Some("http://127.0.0.1:9"), true));
}

/// A hub (or whatever answers as one) that misbehaves: names that would lead out of the cache,
/// bytes that are not the file it named, a download that stops, a redirect to another host
/// (which must not get the token), a revision that is a path. Each is refused with what went
/// wrong, nothing is written outside the cache, and nothing half-fetched is kept as a file.
#[test]
fn a_hub_that_misbehaves_is_refused_and_never_writes_outside_its_cache() {
    let model = model_dir("tiny-clip-b32-quickgelu");
    let tmp = tempfile::tempdir().unwrap();
    let embed = |hub: &StandInHub, case: &str, model_id: &str, env: &[(&str, &str)]| {
        let hf_home = tmp.path().join(case).join("1/2/3/4/5/6/hf");
        let mut cmd = imgsearch();
        cmd.env("HF_HOME", &hf_home).env("HF_ENDPOINT", &hub.endpoint).envs(env.iter().copied());
        let out = cmd
            .args(["embed", "--device", "cpu", "--json", "--model", model_id, "--text", "a photo of a cat"])
            .output()
            .unwrap();
        (out, hf_home)
    };
    let refused = |out: &Output, said: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(said) && stderr.contains("test-org/tiny"), "{said:?} not in: {stderr}");
    };

    let hub = StandInHub::serve_behaving("test-org/tiny", model.clone(), Behaviour::EscapingNames);
    let (out, _) = embed(&hub, "escaping", "test-org/tiny", &[]);
    refused(&out, "does not answer as a Hugging Face hub does");
    let (out, _) = embed(&hub, "escaping", "test-org/tiny@../../../../../escaped-revision", &[]);
    refused(&out, "is not a revision");
    let escaped: Vec<_> =
        files_under(tmp.path()).into_iter().filter(|p| p.to_string_lossy().contains("escaped")).collect();
    assert!(escaped.is_empty(), "written outside the cache: {escaped:?}");

    let hub = StandInHub::serve_behaving("test-org/tiny", model.clone(), Behaviour::CorruptBytes);
    let (out, hf_home) = embed(&hub, "corrupt", "test-org/tiny", &[]);
    refused(&out, "hashes to");
    let kept: Vec<_> = files_under(&hf_home).into_iter().filter(|p| p.to_string_lossy().contains("/blobs/")).collect();
    assert!(kept.is_empty(), "a damaged file was kept: {kept:?}");

    let hub = StandInHub::serve_behaving("test-org/tiny", model.clone(), Behaviour::StallsMidFile);
    let started = std::time::Instant::now();
    let (out, _) = embed(&hub, "stall", "test-org/tiny", &[("HF_HUB_DOWNLOAD_TIMEOUT", "1")]);
    refused(&out, "HF_HUB_DOWNLOAD_TIMEOUT");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());

    let hub = StandInHub::serve_behaving("test-org/tiny", model.clone(), Behaviour::RedirectsToStorage);
    let (out, _) = embed(&hub, "redirect", "test-org/tiny", &[("HF_TOKEN", "hf_secret")]);
    let json = json_of(&out);
    let reference = reference("tiny-clip-b32-quickgelu");
    assert!(cosine(&vector(&json["texts"]["a photo of a cat"]), &reference.text_embeds["a photo of a cat"]) >= 0.9999);
    let sent = hub.storage_authorization.lock().unwrap().clone();
    assert!(!sent.is_empty() && sent.iter().all(Option::is_none), "the token went to another host: {sent:?}");
}

#[test]
fn an_unreachable_hub_or_empty_offline_cache_gives_a_clear_error() {
    let hf_home = tempfile::tempdir().unwrap();
    for offline in [false, true] {
        let mut cmd = imgsearch();
        cmd.env("HF_HOME", hf_home.path()).env("HF_ENDPOINT", "http://127.0.0.1:9").args([
            "embed",
            "--text",
            "x",
            "--model",
            "test-org/never-cached",
        ]);
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("test-org/never-cached") && stderr.contains("config.json"), "{stderr}");
        let hint = if offline { "HF_HUB_OFFLINE" } else { "network" };
        assert!(stderr.contains(hint), "missing hint {hint:?}: {stderr}");
    }
}

/// Hub ids of every layout: SigLIP (its tokenizer_config.json names the pad token),
/// OpenCLIP (open_clip_config.json, no config.json, no tokenizer.json: the built-in CLIP BPE),
/// CoCa's too, and Chinese-CLIP (BERT's vocab.txt in place of tokenizer.json).
#[test]
fn hub_ids_of_every_layout_load_through_the_stand_in_hub() {
    let text = "ein Foto von einer Katze am Strand, über den Dächern";
    for (model, repo) in [
        ("tiny-siglip-sp", "test-org/tiny-siglip"),
        ("tiny-siglip2-gemma", "test-org/tiny-siglip2"),
        ("tiny-siglip2-naflex-p8", "test-org/tiny-siglip2-naflex"),
        ("tiny-openclip-b32-quickgelu", "laion-test/tiny-openclip"),
        ("tiny-coca-b32", "laion-test/tiny-coca"),
        // BERT's vocab.txt, no tokenizer.json.
        ("tiny-chinese-clip", "ofa-test/tiny-chinese-clip"),
    ] {
        let reference = reference(model);
        let hf_home = tempfile::tempdir().unwrap();
        let hub = StandInHub::serve(repo, model_dir(model));
        let coffee = image_path("coffee.png");
        let out = imgsearch()
            .env("HF_HOME", hf_home.path())
            .env("HF_ENDPOINT", &hub.endpoint)
            .args(["embed", "--device", "cpu", "--json", "--model", repo, "--text", text, "--image"])
            .arg(&coffee)
            .output()
            .unwrap();
        let json = json_of(&out);
        assert_eq!(json["dim"], reference.dim, "{model}");
        let got = vector(&json["texts"][text]);
        assert!(cosine(&got, &reference.text_embeds[text]) >= 0.9999, "{model}: text");
        let got = vector(&json["images"][coffee.to_str().unwrap()]);
        assert!(cosine(&got, &reference.image_embeds["coffee.png"]) >= 0.9999, "{model}: picture");
    }
}

/// A multilingual OpenCLIP (its text tower an XLM-RoBERTa) published as open_clip publishes it:
/// the repository holds open_clip_config.json and the weights (or, as LAION's XLM-RoBERTa ones,
/// the weights alone, read with --arch), and hf_model_name names the text model by the hub's
/// legacy one-part id (`xlm-roberta-base`); its config.json and tokenizer.json are fetched from
/// that repository, then found in the cache offline. Offline with no cache, the error names the
/// text model and the file.
#[test]
fn a_multilingual_openclip_fetches_its_text_model_from_the_hub() {
    let text = "ein Foto von einer Katze am Strand, über den Dächern";
    let reference = reference("tiny-openclip-xlmr");
    let (checkpoint, weights_only) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for folder in [&checkpoint, &weights_only] {
        let file = "open_clip_model.safetensors";
        std::fs::copy(model_dir("tiny-openclip-xlmr").join(file), folder.path().join(file)).unwrap();
    }
    let config = std::fs::read_to_string(model_dir("tiny-openclip-xlmr").join("open_clip_config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&config).unwrap();
    let text_cfg = config["model_cfg"]["text_cfg"].as_object_mut().unwrap();
    text_cfg.insert("hf_model_name".into(), "tiny-xlm-roberta".into());
    text_cfg.remove("hf_tokenizer_name");
    std::fs::write(checkpoint.path().join("open_clip_config.json"), config.to_string()).unwrap();
    let hub = StandInHub::serve_repos(
        vec![
            ("laion-test/tiny-xlmr".into(), checkpoint.path().to_owned()),
            ("laion-test/tiny-xlmr-weights".into(), weights_only.path().to_owned()),
            ("tiny-xlm-roberta".into(), model_dir("tiny-xlm-roberta")),
        ],
        Behaviour::Honest,
    );
    let hf_home = tempfile::tempdir().unwrap();
    let arch = checkpoint.path().join("open_clip_config.json");
    let embed = |model: &std::path::Path, arch: Option<&std::path::Path>, hf_home: &std::path::Path, offline: bool| {
        let mut cmd = imgsearch();
        cmd.env("HF_HOME", hf_home).env("HF_ENDPOINT", &hub.endpoint);
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        if let Some(arch) = arch {
            cmd.arg("--arch").arg(arch);
        }
        cmd.args(["embed", "--device", "cpu", "--json", "--text", text, "--model"]).arg(model).output().unwrap()
    };
    for (repo, arch) in [("laion-test/tiny-xlmr", None), ("laion-test/tiny-xlmr-weights", Some(arch.as_path()))] {
        for offline in [false, true] {
            let json = json_of(&embed(repo.as_ref(), arch, hf_home.path(), offline));
            let got = vector(&json["texts"][text]);
            assert!(cosine(&got, &reference.text_embeds[text]) >= 0.9999, "{repo}, offline {offline}");
        }
    }
    let empty_cache = tempfile::tempdir().unwrap();
    let out = embed(checkpoint.path(), None, empty_cache.path(), true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in ["tiny-xlm-roberta", "config.json", "hf_model_name", "HF_HUB_OFFLINE"] {
        assert!(stderr.contains(part), "no {part:?} in: {stderr}");
    }
}

/// A repository timm and open_clip share (timm/vit_base_patch16_clip_224.openai, ...): timm's
/// config.json and image-tower weights beside OpenCLIP's files. timm's config is no CLIPModel's,
/// so the OpenCLIP files are read.
#[test]
fn a_repository_timm_shares_with_open_clip_is_read_as_open_clip() {
    let model = "tiny-openclip-b32-quickgelu";
    let reference = reference(model);
    let folder = tempfile::tempdir().unwrap();
    for file in ["open_clip_config.json", "open_clip_model.safetensors"] {
        std::fs::copy(model_dir(model).join(file), folder.path().join(file)).unwrap();
    }
    // timm's files: its config, and weights under timm's names (any will do: they are not read).
    let timm_config = serde_json::json!({"architecture": "vit_base_patch32_clip_224", "num_classes": 48,
                                         "pretrained_cfg": {"tag": "openai", "input_size": [3, 96, 96]}});
    std::fs::write(folder.path().join("config.json"), timm_config.to_string()).unwrap();
    std::fs::copy(model_dir(model).join("open_clip_model.safetensors"), folder.path().join("model.safetensors"))
        .unwrap();
    let text = "a photo of a cat";
    let out = imgsearch()
        .args(["embed", "--device", "cpu", "--json", "--text", text, "--image"])
        .arg(image_path("coffee.png"))
        .arg("--model")
        .arg(folder.path())
        .output()
        .unwrap();
    let json = json_of(&out);
    assert!(cosine(&vector(&json["texts"][text]), &reference.text_embeds[text]) >= 0.9999);
    let (_, picture) = json["images"].as_object().unwrap().iter().next().unwrap();
    assert!(cosine(&vector(picture), &reference.image_embeds["coffee.png"]) >= 0.9999);
}

/// M-CLIP as the hub has it: the repository holds config.json (modelBase names the encoder by
/// its hub id) and the text tower's weights; the encoder's config.json and tokenizer come from
/// modelBase's repository, and the image tower from the CLIP the M-CLIP's name pairs it with
/// (`XLM-Roberta-Large-Vit-B-32`: openai/clip-vit-base-patch32). Texts embed as
/// multilingual-clip's, pictures as that CLIP's; offline, the cache serves all three.
#[test]
fn an_mclip_fetches_its_encoder_and_its_image_model_from_the_hub() {
    let reference = reference("tiny-mclip");
    let text = "ein Foto von einer Katze am Strand, über den Dächern";
    let checkpoint = tempfile::tempdir().unwrap();
    std::fs::copy(model_dir("tiny-mclip").join("pytorch_model.bin"), checkpoint.path().join("pytorch_model.bin"))
        .unwrap();
    let config = std::fs::read_to_string(model_dir("tiny-mclip").join("config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&config).unwrap();
    config["modelBase"] = "FacebookAI/xlm-roberta-large".into();
    std::fs::write(checkpoint.path().join("config.json"), config.to_string()).unwrap();
    let hub = StandInHub::serve_repos(
        vec![
            ("M-CLIP/XLM-Roberta-Large-Vit-B-32".into(), checkpoint.path().to_owned()),
            ("FacebookAI/xlm-roberta-large".into(), model_dir("tiny-xlm-roberta")),
            ("openai/clip-vit-base-patch32".into(), model_dir("tiny-clip-b32-quickgelu")),
        ],
        Behaviour::Honest,
    );
    let hf_home = tempfile::tempdir().unwrap();
    for offline in [false, true] {
        let mut cmd = imgsearch();
        cmd.env("HF_HOME", hf_home.path()).env("HF_ENDPOINT", &hub.endpoint);
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        cmd.args(["embed", "--device", "cpu", "--json", "--text", text, "--image"]).arg(image_path("coffee.png"));
        let json = json_of(&cmd.args(["--model", "M-CLIP/XLM-Roberta-Large-Vit-B-32"]).output().unwrap());
        let got = vector(&json["texts"][text]);
        assert!(cosine(&got, &reference.text_embeds[text]) >= 0.9999, "offline {offline}");
        let (_, picture) = json["images"].as_object().unwrap().iter().next().unwrap();
        assert!(cosine(&vector(picture), &reference.image_embeds["coffee.png"]) >= 0.9999, "offline {offline}");
    }
}

/// An M-CLIP whose name pairs it with no CLIP must be told which one (after `#`), and one paired
/// with a model of another width or family is refused; each error says what to do.
#[test]
fn an_mclip_without_its_image_model_is_refused_with_what_to_do() {
    let mclip = model_dir("tiny-mclip");
    let embed = |model: String| {
        imgsearch()
            .args(["embed", "--device", "cpu", "--json", "--text", "a cat", "--model"])
            .arg(model)
            .output()
            .unwrap()
    };
    for (model, expected) in [
        (mclip.display().to_string(), "name that CLIP after '#'"),
        (format!("{}#{}", mclip.display(), model_dir("tiny-clip-p14-gelu").display()), "40-wide CLIP embeddings"),
        (format!("{}#{}", mclip.display(), model_dir("tiny-siglip-sp").display()), "SigLIP embeddings"),
    ] {
        let out = embed(model.clone());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{model}: {stderr}");
        assert!(stderr.contains(expected), "{model}: no {expected:?} in: {stderr}");
    }
}

/// An OpenCLIP SigLIP published as timm's are (ViT-SO400M-14-SigLIP names timm/ViT-B-16-SigLIP's
/// tokenizer): a repository without a tokenizer of its own fetches tokenizer.json from the one
/// hf_tokenizer_name names, then finds both in the cache offline.
#[test]
fn an_openclip_siglip_fetches_the_tokenizer_its_config_names() {
    let text = "A_CAT, on the BEACH!!";
    let reference = reference("tiny-openclip-siglip2");
    let checkpoint = tempfile::tempdir().unwrap();
    let file = "open_clip_pytorch_model.bin";
    std::fs::copy(model_dir("tiny-openclip-siglip2").join(file), checkpoint.path().join(file)).unwrap();
    let config = std::fs::read_to_string(model_dir("tiny-openclip-siglip2").join("open_clip_config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&config).unwrap();
    config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "timm-test/tiny-gemma-tokenizer".into();
    std::fs::write(checkpoint.path().join("open_clip_config.json"), config.to_string()).unwrap();
    let hub = StandInHub::serve_repos(
        vec![
            ("timm-test/tiny-siglip2".into(), checkpoint.path().to_owned()),
            ("timm-test/tiny-gemma-tokenizer".into(), model_dir("tiny-gemma-tokenizer")),
        ],
        Behaviour::Honest,
    );
    let hf_home = tempfile::tempdir().unwrap();
    let coffee = image_path("coffee.png");
    for offline in [false, true] {
        let mut cmd = imgsearch();
        cmd.env("HF_HOME", hf_home.path()).env("HF_ENDPOINT", &hub.endpoint);
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        let out = cmd
            .args(["embed", "--device", "cpu", "--json", "--text", text, "--image"])
            .arg(&coffee)
            .args(["--model", "timm-test/tiny-siglip2"])
            .output()
            .unwrap();
        let json = json_of(&out);
        let got = vector(&json["texts"][text]);
        assert!(cosine(&got, &reference.text_embeds[text]) >= 0.9999, "offline {offline}: text");
        let got = vector(&json["images"][coffee.to_str().unwrap()]);
        assert!(cosine(&got, &reference.image_embeds["coffee.png"]) >= 0.9999, "offline {offline}: picture");
    }
}

/// NLLB's tokenizer class sets its own special tokens whatever tokenizer.json holds (the source
/// language's code, then the text, then `</s>`): a tokenizer.json saved with another template
/// still embeds as open_clip does.
#[test]
fn an_nllb_tokenizer_gets_the_special_tokens_its_class_sets() {
    let text = "a photo of a cat";
    let folder = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(model_dir("tiny-openclip-nllb")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.path().join(path.file_name().unwrap())).unwrap();
    }
    let tokenizer = folder.path().join("tokenizer.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&tokenizer).unwrap()).unwrap();
    let end = json["post_processor"]["special_tokens"]["</s>"].clone();
    json["post_processor"] = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
        "special_tokens": {"</s>": end},
    });
    std::fs::write(&tokenizer, json.to_string()).unwrap();
    let out = imgsearch()
        .args(["embed", "--device", "cpu", "--json", "--text", text, "--model"])
        .arg(folder.path())
        .output()
        .unwrap();
    let got = vector(&json_of(&out)["texts"][text]);
    assert!(cosine(&got, &reference("tiny-openclip-nllb").text_embeds[text]) >= 0.9999);
}

/// OpenCLIP text towers from Hugging Face models that do not run here (mT5's encoder), open_clip
/// options the towers do not implement, and a pad id no token has are refused at load, by name.
#[test]
fn openclip_text_towers_that_do_not_run_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, Value, &str); 4] = [
        ("mt5", serde_json::json!({"model_type": "mt5", "d_model": 32}), "\"mt5\" models are not implemented"),
        ("max-pooler", serde_json::json!({"model_type": "xlm-roberta"}), "hf_pooler_type=max_pooler"),
        // Positions count from the pad id: one past every token would overflow them.
        (
            "pad-id",
            serde_json::json!({"model_type": "m2m_100", "pad_token_id": 4294967295u64}),
            "pad_token_id 4294967295",
        ),
        (
            "relative-positions",
            serde_json::json!({"model_type": "bert", "position_embedding_type": "relative_key"}),
            "relative_key",
        ),
    ];
    for (case, text_model, expected) in cases {
        let (checkpoint, text_dir) = (tmp.path().join(case), tmp.path().join(format!("{case}-text")));
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::create_dir_all(&text_dir).unwrap();
        std::fs::write(text_dir.join("config.json"), text_model.to_string()).unwrap();
        for file in ["open_clip_model.safetensors", "tokenizer.json"] {
            std::fs::copy(model_dir("tiny-openclip-xlmr").join(file), checkpoint.join(file)).unwrap();
        }
        let config = std::fs::read_to_string(model_dir("tiny-openclip-xlmr").join("open_clip_config.json")).unwrap();
        let mut config: Value = serde_json::from_str(&config).unwrap();
        let text_cfg = config["model_cfg"]["text_cfg"].as_object_mut().unwrap();
        text_cfg.insert("hf_model_name".into(), text_dir.to_str().unwrap().into());
        if case == "max-pooler" {
            text_cfg.insert("hf_pooler_type".into(), "max_pooler".into());
        }
        std::fs::write(checkpoint.join("open_clip_config.json"), config.to_string()).unwrap();
        let out =
            imgsearch().args(["embed", "--device", "cpu", "--text", "x", "--model"]).arg(&checkpoint).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert!(stderr.contains(expected), "{case}: no {expected:?} in {stderr}");
    }
}

/// Pictures the `image` crate refuses or cannot recognise are embedded as their documented
/// picture: a TIFF of float measurements (an elevation model, say) as grey stretched between the
/// 2nd and 98th percentile of its values, NaN black and outliers clipped; an icon that holds an
/// RGB PNG as that PNG; a TGA (no magic number) by its name. Each embeds exactly as an 8-bit PNG
/// of the expected picture, and `index` takes them.
#[test]
fn float_tiffs_icons_holding_rgb_pngs_and_tgas_embed_as_the_picture_they_show() {
    use tiff::encoder::{colortype::Gray32Float, TiffEncoder};
    let tmp = tempfile::tempdir().unwrap();
    let (width, height) = (64u32, 48u32);
    // Grey levels with more than 2% of the pixels at 0 and at 255, so the stretch maps the
    // values of those to exactly 0 and 255.
    let mut grey = image::open(image_path("camera_gray.png"))
        .unwrap()
        .resize_exact(width, height, image::imageops::Triangle)
        .to_luma8();
    for (_, y, level) in grey.enumerate_pixels_mut().filter(|(_, y, _)| *y < 3 || *y >= height - 3) {
        level.0 = [if y < 3 { 0 } else { 255 }];
    }
    let (low, high) = (-120.5f32, 3400.0f32);
    let mut values: Vec<f32> = grey.pixels().map(|g| low + f32::from(g.0[0]) * (high - low) / 255.0).collect();
    // No data (NaN, and the -9999 some tools write) is black; an outlier is white.
    for (at, value, level) in [(5, f32::NAN, 0), (6, -9999.0, 0), (7, 1e30, 255)] {
        values[(10 * width + at) as usize] = value;
        grey.put_pixel(at, 10, image::Luma([level]));
    }
    let measured = tmp.path().join("elevation.tif");
    let mut encoder = TiffEncoder::new(std::fs::File::create(&measured).unwrap()).unwrap();
    encoder.write_image::<Gray32Float>(width, height, &values).unwrap();
    let shown = tmp.path().join("elevation-shown.png");
    image::DynamicImage::ImageLuma8(grey).to_rgb8().save(&shown).unwrap();

    // An icon's directory and one entry (64 × 64, 24 bits), then an RGB PNG.
    let mut png = Vec::new();
    image::open(image_path("rocket.jpg"))
        .unwrap()
        .resize_exact(64, 64, image::imageops::Triangle)
        .to_rgb8()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut icon = vec![0, 0, 1, 0, 1, 0, 64, 64, 0, 0, 1, 0, 24, 0];
    icon.extend((png.len() as u32).to_le_bytes());
    icon.extend(22u32.to_le_bytes());
    icon.extend(&png);
    let (icon_path, png_path) = (tmp.path().join("rocket.ico"), tmp.path().join("rocket.png"));
    std::fs::write(&icon_path, icon).unwrap();
    std::fs::write(&png_path, &png).unwrap();

    // A TGA has no magic number: it is known by its name.
    let targa = tmp.path().join("rocket.tga");
    image::load_from_memory(&png).unwrap().save(&targa).unwrap();

    let model = model_dir("tiny-clip-b32-quickgelu");
    let mut embed = imgsearch();
    embed.args(["embed", "--device", "cpu", "--json", "--model"]).arg(&model);
    for file in [&measured, &shown, &icon_path, &png_path, &targa] {
        embed.arg("--image").arg(file);
    }
    let json = json_of(&embed.output().unwrap());
    let embedding = |path: &std::path::Path| vector(&json["images"][path.to_str().unwrap()]);
    assert_eq!(embedding(&measured), embedding(&shown));
    assert_eq!(embedding(&icon_path), embedding(&png_path));
    assert_eq!(embedding(&targa), embedding(&png_path));
    // And `index` takes all five.
    let data = tmp.path().join("data");
    let out = imgsearch()
        .args(["--data-dir", data.to_str().unwrap(), "index", tmp.path().to_str().unwrap(), "--model"])
        .arg(&model)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("5 indexed") && said.contains(" 0 skipped"), "{said}");
}
