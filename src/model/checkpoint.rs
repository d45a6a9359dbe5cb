//! Where a CLIP checkpoint comes from: a local folder, or a Hugging Face repo id fetched once
//! through `hf-hub` into its standard cache (`HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE` honoured).

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "openai/clip-vit-base-patch32";
/// `main` of openai/clip-vit-base-patch32 predates safetensors; this revision (the one candle's
/// own CLIP example pins) carries `model.safetensors` beside the same config and tokenizer.
const DEFAULT_MODEL_REVISION: &str = "refs/pr/15";

/// The files of one checkpoint, all on the local disk.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: PathBuf,
    /// Absent in some repositories; `CLIPImageProcessor`'s defaults apply then.
    pub preprocessor: Option<PathBuf>,
}

const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

impl CheckpointFiles {
    /// Resolves `model` — a folder, or `owner/name[@revision]` on the hub — to local files.
    pub fn resolve(model: &str) -> Result<Self> {
        let path = Path::new(model);
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if looks_like_repo_id(model) {
            return Self::from_hub(model);
        }
        Err(Error::MissingModelFile {
            path: path.to_owned(),
            missing: "such folder (and it is not a Hugging Face repo id like openai/clip-vit-base-patch32)".into(),
        })
    }

    pub fn from_dir(dir: &Path) -> Result<Self> {
        let required = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::MissingModelFile { path: dir.to_owned(), missing: name.into() })
            }
        };
        let weights = WEIGHT_FILES.iter().map(|name| dir.join(name)).find(|p| p.is_file()).ok_or_else(|| {
            Error::MissingModelFile { path: dir.to_owned(), missing: "model.safetensors or pytorch_model.bin".into() }
        })?;
        let preprocessor = Some(dir.join("preprocessor_config.json")).filter(|p| p.is_file());
        Ok(Self { config: required("config.json")?, tokenizer: required("tokenizer.json")?, weights, preprocessor })
    }

    fn from_hub(model: &str) -> Result<Self> {
        let (repo_id, revision) = match model.split_once('@') {
            Some((id, rev)) => (id.to_string(), rev.to_string()),
            None if model == DEFAULT_MODEL => (model.to_string(), DEFAULT_MODEL_REVISION.to_string()),
            None => (model.to_string(), "main".to_string()),
        };
        let repo = Repo::with_revision(repo_id.clone(), RepoType::Model, revision);
        let fetcher = if hub_offline() {
            HubFetcher::Cache(Cache::from_env().repo(repo))
        } else {
            HubFetcher::online(repo, &repo_id)?
        };
        let fetch = |file: &str| fetcher.fetch(&repo_id, file);

        let config = fetch("config.json")?.ok_or_else(|| fetcher.missing(&repo_id, "config.json"))?;
        let tokenizer = fetch("tokenizer.json")?.ok_or_else(|| fetcher.missing(&repo_id, "tokenizer.json"))?;
        let mut weights = None;
        for name in WEIGHT_FILES {
            if let Some(p) = fetch(name)? {
                weights = Some(p);
                break;
            }
        }
        let weights = weights.ok_or_else(|| fetcher.missing(&repo_id, "model.safetensors or pytorch_model.bin"))?;
        let preprocessor = fetch("preprocessor_config.json")?;
        Ok(Self { config, tokenizer, weights, preprocessor })
    }

    /// Opens the checkpoint's tensors for reading one by one.
    pub fn open_tensors(&self) -> Result<CheckpointTensors> {
        let bad = |e: candle_core::Error| Error::BadCheckpoint { path: self.weights.clone(), reason: e.to_string() };
        if self.weights.extension().is_some_and(|e| e == "safetensors") {
            // SAFETY: the mapping is read-only. Hub cache blobs are content-addressed and never
            // rewritten in place; a local checkpoint rewritten while it loads is not guarded.
            let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(&self.weights) }.map_err(bad)?;
            let names = file.tensors().into_iter().map(|(name, _)| name).collect();
            Ok(CheckpointTensors::Mapped { file, names })
        } else {
            Ok(CheckpointTensors::Loaded(
                candle_core::pickle::read_all(&self.weights).map_err(bad)?.into_iter().collect(),
            ))
        }
    }
}

/// A checkpoint's tensors, read one at a time as the model asks for them: a weight that is
/// transposed or packed at load is then never held twice, and a 600 MB checkpoint is not first
/// copied whole into memory (measured: ViT-B/32 load 3.4 s -> see benches/README.md).
pub enum CheckpointTensors {
    /// `model.safetensors`, memory-mapped.
    Mapped { file: candle_core::safetensors::MmapedSafetensors, names: HashSet<String> },
    /// `pytorch_model.bin` (a pickle), read whole.
    Loaded(HashMap<String, Tensor>),
}

impl CheckpointTensors {
    /// The tensor called `name` as plain f32 on `device` (no autograd variables: a `VarMap`
    /// keeps gradient bookkeeping alive, measured 4x the memory), or `None` when absent.
    pub fn get(&self, name: &str, device: &Device) -> candle_core::Result<Option<Tensor>> {
        let tensor = match self {
            Self::Mapped { file, names } if names.contains(name) => file.load(name, &Device::Cpu)?,
            Self::Loaded(tensors) if tensors.contains_key(name) => tensors[name].clone(),
            _ => return Ok(None),
        };
        Ok(Some(tensor.to_dtype(DType::F32)?.to_device(device)?))
    }
}

fn looks_like_repo_id(model: &str) -> bool {
    let id = model.split('@').next().unwrap_or_default();
    let mut parts = id.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

#[allow(clippy::large_enum_variant)] // built once per model load
enum HubFetcher {
    Online(hf_hub::api::sync::ApiRepo),
    Cache(hf_hub::CacheRepo),
}

impl HubFetcher {
    fn online(repo: Repo, repo_id: &str) -> Result<Self> {
        let api = ApiBuilder::from_env().with_progress(true).build().map_err(|e| Error::Download {
            repo: repo_id.into(),
            file: "(any)".into(),
            reason: e.to_string(),
            hint: "Check HF_HOME points to a writable folder.".into(),
        })?;
        Ok(Self::Online(api.repo(repo)))
    }

    /// `Ok(None)` when the repository does not have the file (a 404), an error for anything else.
    fn fetch(&self, repo_id: &str, file: &str) -> Result<Option<PathBuf>> {
        match self {
            Self::Cache(cache) => Ok(cache.get(file)),
            Self::Online(api) => match api.get(file) {
                Ok(path) => Ok(Some(path)),
                Err(ApiError::RequestError(e)) if matches!(*e, ureq::Error::StatusCode(404)) => Ok(None),
                Err(e) => Err(Error::Download {
                    repo: repo_id.into(),
                    file: file.into(),
                    reason: e.to_string(),
                    hint: "Check the network (and HF_ENDPOINT if set), set HF_HUB_OFFLINE=1 to use what is already \
                           cached, or pass --model a local folder with config.json, model.safetensors and tokenizer.json."
                        .into(),
                }),
            },
        }
    }

    fn missing(&self, repo_id: &str, file: &str) -> Error {
        let (reason, hint) = match self {
            Self::Cache(_) => (
                "HF_HUB_OFFLINE is set and it is not in the local cache".to_string(),
                "Run once with network access (unset HF_HUB_OFFLINE), or pass --model a local folder.".to_string(),
            ),
            Self::Online(_) => (
                "the repository has no such file".to_string(),
                "Is this a CLIP checkpoint in Hugging Face format?".to_string(),
            ),
        };
        Error::Download { repo: repo_id.into(), file: file.into(), reason, hint }
    }
}
