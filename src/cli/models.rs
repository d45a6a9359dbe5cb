//! `imgsearch models`: the model families imgsearch runs, and which checkpoint to pick for what,
//! with its size and (`--measure`) its speed on this machine.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use imgsearch::model::{openclip, ModelConfig, Precision};
use imgsearch::Clip;

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Time each recommended model's image and text encoders here (random weights of the exact
    /// shape, nothing downloaded; the largest takes a minute and several GB of memory).
    #[arg(long)]
    measure: bool,
    #[arg(long)]
    json: bool,
    /// Drop this model's embeddings from the library (a library can hold several: `imgsearch
    /// stats` lists them); its users and tokens stay.
    #[arg(long, value_name = "MODEL", conflicts_with = "measure")]
    remove: Option<String>,
}

/// A checkpoint worth knowing, by what it is good for.
struct Recommendation {
    need: &'static str,
    model: &'static str,
    /// How to use it, where `--model ID` is not all.
    how: Option<&'static str>,
    /// Its shape: what `config.json` holds beyond the family's defaults.
    config: fn() -> ModelConfig,
}

fn hugging_face(config: serde_json::Value) -> ModelConfig {
    ModelConfig::from_json(config, Path::new("(built in)")).expect("the recommended shapes are valid")
}

const RECOMMENDED: [Recommendation; 8] = [
    Recommendation {
        need: "fastest (the default)",
        model: "openai/clip-vit-base-patch32",
        how: None,
        config: ModelConfig::vit_base_patch32,
    },
    Recommendation {
        need: "better, English",
        model: "openai/clip-vit-large-patch14",
        how: None,
        config: || {
            hugging_face(serde_json::json!({
                "projection_dim": 768,
                "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12},
                "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                                  "num_attention_heads": 16, "patch_size": 14},
            }))
        },
    },
    Recommendation {
        need: "best quality, English",
        model: "timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k",
        how: None,
        config: || {
            let arch = openclip::OpenClipConfig::from_arch("EVA02-L-14").expect("EVA02-L-14 is built in");
            arch.model_config(Path::new("EVA02-L-14"), None).expect("EVA02-L-14 converts")
        },
    },
    Recommendation {
        need: "multilingual, better retrieval",
        model: "google/siglip2-base-patch16-224",
        how: None,
        config: || hugging_face(serde_json::json!({"model_type": "siglip", "text_config": {"vocab_size": 256000}})),
    },
    Recommendation {
        need: "multilingual, fast",
        model: "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k",
        how: Some(
            "--model laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k --arch xlm-roberta-base-ViT-B-32; its text \
             tower's config and tokenizer come from the hub's xlm-roberta-base",
        ),
        config: || {
            // ViT-B-32 (GELU) with xlm-roberta-base as open_clip builds it: mean pooling, the MLP projection.
            hugging_face(serde_json::json!({
                "text_config": {"vocab_size": 250002, "hidden_size": 768, "intermediate_size": 3072,
                                "num_attention_heads": 12, "max_position_embeddings": 514, "hidden_act": "gelu",
                                "hf_encoder": {"architecture": "bert", "embed_scale": 1.0, "type_vocab_size": 1, "pad_token_id": 1, "positions_after_pad": true,
                                               "context_length": 77, "masks_pad_id": true, "pooler": "mean",
                                               "projection": "mlp"}},
                "vision_config": {"hidden_act": "gelu"},
            }))
        },
    },
    Recommendation {
        need: "multilingual, 200 languages",
        model: "visheratin/nllb-clip-base-oc",
        how: Some(
            "--model visheratin/nllb-clip-base-oc --arch nllb-clip-base; its text tower's config and tokenizer come \
             from the hub's facebook/nllb-200-distilled-600M",
        ),
        config: || {
            // ViT-B-32 (GELU) with nllb-200-distilled-600M's encoder as open_clip builds it: the
            // first token, a linear projection.
            hugging_face(serde_json::json!({
                "text_config": {"vocab_size": 256206, "hidden_size": 1024, "intermediate_size": 4096,
                                "num_attention_heads": 16, "max_position_embeddings": 1024, "hidden_act": "relu",
                                "hf_encoder": {"architecture": "m2m100", "embed_scale": 32.0, "type_vocab_size": 0,
                                               "pad_token_id": 1, "positions_after_pad": true,
                                               "context_length": 77, "masks_pad_id": true,
                                               "pooler": "first_token", "projection": "linear"}},
                "vision_config": {"hidden_act": "gelu"},
            }))
        },
    },
    Recommendation {
        need: "best quality, multilingual",
        model: "google/siglip2-so400m-patch14-384",
        how: None,
        config: || {
            let tower = serde_json::json!({"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                                           "num_attention_heads": 16});
            let mut vision = tower.clone();
            vision["patch_size"] = 14.into();
            vision["image_size"] = 384.into();
            let mut text = tower;
            text["vocab_size"] = 256000.into();
            hugging_face(serde_json::json!({"model_type": "siglip", "text_config": text, "vision_config": vision}))
        },
    },
    Recommendation {
        need: "satellite and aerial imagery",
        model: "RemoteCLIP-ViT-B-32.pt",
        how: Some("download it from the hub repository chendelong/RemoteCLIP, then --model RemoteCLIP-ViT-B-32.pt"),
        config: || {
            let arch = openclip::OpenClipConfig::from_arch("ViT-B-32").expect("ViT-B-32 is built in");
            arch.model_config(Path::new("ViT-B-32"), None).expect("ViT-B-32 converts")
        },
    },
];

#[derive(Serialize)]
struct Row {
    need: &'static str,
    model: &'static str,
    how: Option<&'static str>,
    family: String,
    parameters: u64,
    /// The f32 checkpoint's size (hub files in f16 are half).
    f32_bytes: u64,
    image_size: usize,
    dim: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    measured: Option<Speed>,
}

#[derive(Serialize)]
struct Speed {
    images_per_s: f64,
    text_query_ms: f64,
    cpu_kernels: &'static str,
}

pub fn run(args: ModelsArgs, library: &imgsearch::store::Location) -> anyhow::Result<()> {
    if let Some(model) = &args.remove {
        imgsearch::store::spaces::remove(library, model)?;
        let left = imgsearch::store::spaces::for_search(library, None)?.model;
        match left {
            Some(left) => println!("removed the embeddings of {model}; searches use {left}"),
            None => println!("removed the embeddings of {model}; the library holds no model now"),
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for rec in &RECOMMENDED {
        let config = (rec.config)();
        let measured = if args.measure {
            if !args.json {
                eprintln!("timing {} ...", rec.model);
            }
            Some(measure(&config)?)
        } else {
            None
        };
        let parameters = config.parameter_count();
        rows.push(Row {
            need: rec.need,
            model: rec.model,
            how: rec.how,
            family: format!("{:?}", config.family).to_lowercase(),
            parameters,
            f32_bytes: parameters * 4,
            image_size: config.vision_config.image_size,
            dim: config.projection_dim,
            measured,
        });
    }
    if args.json {
        let families = serde_json::json!([
            {"family": "clip", "reads": "Hugging Face CLIPModel, MetaClip2Model and ChineseCLIPModel folders and hub ids (config.json model_type \"clip\", \"metaclip_2\", \"chinese_clip\"); M-CLIP text towers (model_type \"M-CLIP\") with the CLIP they pair with, or the one named after '#'"},
            {"family": "siglip", "reads": "Hugging Face SiglipModel and Siglip2Model: SigLIP, SigLIP 2 at a fixed resolution and NaFlex (pictures in their own aspect ratio), multilingual SigLIP (with tokenizer.json)"},
            {"family": "openclip", "reads": "open_clip_config.json folders and hub ids (ViT, ResNet, EVA-CLIP, MobileCLIP-B, ConvNeXt, CLIPA, CoCa, BERT / RoBERTa / XLM-RoBERTa / NLLB text towers, SigLIP and SigLIP 2 with timm's image towers); bare state dicts with --arch",
             "architectures": openclip::builtin_arch_names()},
        ]);
        println!("{}", serde_json::json!({"families": families, "recommended": rows}));
        return Ok(());
    }
    println!("Families (`--model` takes a hub id, a folder or a file; the layout is read from the files):");
    println!("  clip      Hugging Face CLIPModel: openai/clip-*, laion/CLIP-* (their Hugging Face files),");
    println!("            MetaClip2Model: facebook/metaclip-2-worldwide-* (hundreds of languages), and");
    println!("            ChineseCLIPModel: OFA-Sys/chinese-clip-* (BERT's vocab.txt will do for tokenizer.json),");
    println!("            M-CLIP: M-CLIP/XLM-Roberta-Large-Vit-B-32, ... (any other: --model 'M-CLIP#ITS-CLIP')");
    println!(
        "  siglip    Hugging Face SiglipModel and Siglip2Model: SigLIP, SigLIP 2 (fixed resolution, and NaFlex: pictures \
         in their own aspect ratio), multilingual SigLIP"
    );
    println!("            (needs tokenizer.json); hits also show the model's probability (--min-prob)");
    println!("  openclip  OpenCLIP ViT, ResNet (RN50, RN101, RN50x4 ...), EVA-CLIP (timm/eva02_*_clip_*),");
    println!("            MobileCLIP-B (apple/MobileCLIP-B-OpenCLIP) and ConvNeXt (laion/CLIP-convnext_*)");
    println!("            checkpoints, CLIPA's (UCSC-VLAA/ViT-*-CLIPA-*), CoCa's,");
    println!("            multilingual ones");
    println!("            (XLM-RoBERTa, NLLB text towers), SigLIP and SigLIP 2 as timm publishes them");
    println!("            (timm/ViT-SO400M-14-SigLIP-384, ...)");
    println!("            (open_clip_config.json + open_clip_model.safetensors), and bare state dicts or weights");
    println!("            without open_clip_config.json: --model FILE.pt --arch NAME, NAME one of");
    println!("            {}", openclip::builtin_arch_names().join(", "));
    println!();
    println!("Recommended:");
    for row in &rows {
        let speed = match &row.measured {
            Some(s) => format!(
                ", here {:.1} images/s, text query {:.1} ms ({})",
                s.images_per_s, s.text_query_ms, s.cpu_kernels
            ),
            None => String::new(),
        };
        println!(
            "  {:<31} {}  [{}, {}M parameters, {:.2} GB in f32, {}px, dim {}{speed}]",
            row.need,
            row.model,
            row.family,
            row.parameters / 1_000_000,
            row.f32_bytes as f64 / 1e9,
            row.image_size,
            row.dim
        );
        if let Some(how) = row.how {
            println!("  {:<31} ({how})", "");
        }
    }
    if !args.measure {
        println!();
        println!("`imgsearch models --measure` times each on this machine (random weights, nothing downloaded).");
    }
    Ok(())
}

/// Image encoder images/s at batch 8 and one text query, on random weights of this shape.
fn measure(config: &ModelConfig) -> anyhow::Result<Speed> {
    let device = candle_core::Device::Cpu;
    let clip = Clip::with_random_weights(config.clone(), None, &device, Precision::F32)?;
    let size = config.vision_config.image_size;
    let images = vec![clip.preprocess_config().test_pattern(size, size); 8];
    clip.embed_images(&images[..1])?; // warm-up
    let started = Instant::now();
    clip.embed_images(&images)?;
    let images_per_s = images.len() as f64 / started.elapsed().as_secs_f64();
    let query = "a dog running on a beach at sunset";
    clip.embed_texts(&[query])?;
    let started = Instant::now();
    const QUERIES: u32 = 5;
    for _ in 0..QUERIES {
        clip.embed_texts(&[query])?;
    }
    let text_query_ms = started.elapsed().as_secs_f64() * 1e3 / f64::from(QUERIES);
    Ok(Speed { images_per_s, text_query_ms, cpu_kernels: imgsearch::model::kernels::isa().name() })
}
