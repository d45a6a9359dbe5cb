//! Where a CLIP checkpoint comes from: a local folder, or a Hugging Face repo id fetched once
//! into the hub's standard cache (`hub.rs`: `HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_TOKEN`
//! honoured).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::hub::HubRepo;
use super::openclip::{self, OpenClipConfig};
use crate::error::{Error, Result};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "openai/clip-vit-base-patch32";
/// `main` of openai/clip-vit-base-patch32 predates safetensors; this revision (the one candle's
/// own CLIP example pins) carries `model.safetensors` beside the same config and tokenizer.
const DEFAULT_MODEL_REVISION: &str = "refs/pr/15";

/// The files of one checkpoint, all on the local disk.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    pub layout: Layout,
    pub weights: PathBuf,
    /// `tokenizer.json`; OpenCLIP checkpoints without one use the CLIP tokenizer built in.
    pub tokenizer: Option<PathBuf>,
    /// Absent in some repositories; the family's image processor defaults apply then.
    pub preprocessor: Option<PathBuf>,
    /// Where SigLIP tokenizers name their pad token when `tokenizer.json` does not.
    pub tokenizer_config: Option<PathBuf>,
}

/// Which format a checkpoint is in, with where its configuration is.
#[derive(Debug, Clone)]
pub enum Layout {
    /// `transformers`' `config.json` + `model.safetensors` / `pytorch_model.bin`.
    HuggingFace { config: PathBuf },
    /// OpenCLIP's config (from `open_clip_config.json`, or a named architecture for a bare state
    /// dict), `source` naming where it came from.
    OpenClip { config: Box<OpenClipConfig>, source: PathBuf },
}

const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
const OPEN_CLIP_WEIGHT_FILES: [&str; 2] = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];

impl CheckpointFiles {
    /// Resolves `model` — a folder, a bare OpenCLIP state dict (`file.pt`, optionally
    /// `file.pt#ARCH`), or `owner/name[@revision]` on the hub — to local files.
    pub fn resolve(model: &str) -> Result<Self> {
        let path = Path::new(model);
        if path.is_dir() {
            return Self::from_source(model, |name| Ok(Some(path.join(name)).filter(|p| p.is_file())));
        }
        if let Some((file, arch)) = bare_state_dict(model) {
            return Self::bare(file, arch);
        }
        if looks_like_repo_id(model) {
            return Self::from_hub(model);
        }
        Err(Error::MissingModelFile {
            path: path.to_owned(),
            missing: "such folder or file (and it is not a Hugging Face repo id like openai/clip-vit-base-patch32)"
                .into(),
        })
    }

    /// A folder or hub repository whose files `get` fetches (`None`: no such file): the
    /// Hugging Face layout where it is complete, else OpenCLIP's.
    fn from_source(label: &str, get: impl Fn(&str) -> Result<Option<PathBuf>>) -> Result<Self> {
        let first = |names: &[&str]| -> Result<Option<PathBuf>> {
            for name in names {
                if let Some(p) = get(name)? {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        };
        let missing = |what: &str| Error::MissingModelFile { path: label.into(), missing: what.into() };
        if let Some(config) = get("config.json")? {
            if let Some(weights) = first(&WEIGHT_FILES)? {
                return Ok(Self {
                    layout: Layout::HuggingFace { config },
                    tokenizer: Some(get("tokenizer.json")?.ok_or_else(|| missing("tokenizer.json"))?),
                    weights,
                    preprocessor: get("preprocessor_config.json")?,
                    tokenizer_config: get("tokenizer_config.json")?,
                });
            }
        }
        let Some(source) = get("open_clip_config.json")? else {
            return Err(missing(
                "config.json with model.safetensors or pytorch_model.bin (Hugging Face), or open_clip_config.json \
                 (OpenCLIP)",
            ));
        };
        let weights = first(&OPEN_CLIP_WEIGHT_FILES)?
            .ok_or_else(|| missing("open_clip_model.safetensors or open_clip_pytorch_model.bin"))?;
        Ok(Self {
            layout: Layout::OpenClip { config: Box::new(OpenClipConfig::from_hub_file(&source)?), source },
            weights,
            tokenizer: get("tokenizer.json")?,
            preprocessor: None,
            tokenizer_config: None,
        })
    }

    /// A bare OpenCLIP state dict with its architecture (a built-in name or a model config file).
    fn bare(file: &Path, arch: String) -> Result<Self> {
        if arch.is_empty() {
            return Err(Error::BadCheckpoint {
                path: file.to_owned(),
                reason: format!(
                    "a bare state dict needs its OpenCLIP architecture: add --arch NAME (one of {}) or --arch \
                     MODEL_CONFIG.json",
                    openclip::builtin_arch_names().join(", ")
                ),
            });
        }
        let config = OpenClipConfig::from_arch(&arch)?;
        Ok(Self {
            layout: Layout::OpenClip { config: Box::new(config), source: file.to_owned() },
            weights: file.to_owned(),
            tokenizer: None,
            preprocessor: None,
            tokenizer_config: None,
        })
    }

    fn from_hub(model: &str) -> Result<Self> {
        let (repo_id, revision) = match model.split_once('@') {
            Some((id, rev)) => (id.to_string(), rev.to_string()),
            None if model == DEFAULT_MODEL => (model.to_string(), DEFAULT_MODEL_REVISION.to_string()),
            None => (model.to_string(), "main".to_string()),
        };
        let offline = hub_offline();
        let hub = HubRepo::new(&repo_id, &revision, offline)?;
        Self::from_source(&repo_id, |file| hub.fetch(file)).map_err(|e| match e {
            Error::MissingModelFile { missing, .. } => {
                let (reason, hint) = match offline {
                    true => (
                        "HF_HUB_OFFLINE is set and it is not in the local cache",
                        "Run once with network access (unset HF_HUB_OFFLINE), or pass --model a local folder.",
                    ),
                    false => (
                        "the repository has no such file",
                        "Is this a CLIP, SigLIP or OpenCLIP checkpoint? `imgsearch models` lists what runs.",
                    ),
                };
                Error::Download { repo: repo_id.clone(), file: missing, reason: reason.into(), hint: hint.into() }
            }
            other => other,
        })
    }

    /// Opens the checkpoint's tensors for reading one by one, by `transformers`' names.
    pub fn open_tensors(&self) -> Result<CheckpointTensors> {
        let bad = |e: candle_core::Error| Error::BadCheckpoint { path: self.weights.clone(), reason: e.to_string() };
        if let Layout::OpenClip { .. } = self.layout {
            let tensors = if self.weights.extension().is_some_and(|e| e == "safetensors") {
                candle_core::safetensors::load(&self.weights, &Device::Cpu).map_err(bad)?.into_iter().collect()
            } else {
                read_pickled_state_dict(&self.weights).map_err(bad)?
            };
            return Ok(CheckpointTensors::Loaded(openclip::to_clip_names(tensors, &self.weights)?));
        }
        if self.weights.extension().is_some_and(|e| e == "safetensors") {
            // SAFETY: the mapping is read-only. Hub cache blobs are content-addressed and never
            // rewritten in place; a local checkpoint rewritten while it loads is not guarded.
            let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(&self.weights) }.map_err(bad)?;
            let names = file.tensors().into_iter().map(|(name, _)| name).collect();
            Ok(CheckpointTensors::Mapped { file, names })
        } else {
            Ok(CheckpointTensors::Loaded(read_torch_file(&self.weights, None).map_err(bad)?.into_iter().collect()))
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

/// A PyTorch state dict, or one wrapped as training scripts save it (`{"state_dict": …}`).
fn read_pickled_state_dict(path: &Path) -> candle_core::Result<Vec<(String, Tensor)>> {
    let tensors = read_torch_file(path, None)?;
    if !tensors.is_empty() {
        return Ok(tensors);
    }
    read_torch_file(path, Some("state_dict"))
}

/// The tensors of a file `torch.save` wrote (a zip archive holding a pickle): a state dict's, or
/// those of its `key` entry. Tensors stored with gaps between their values are refused.
///
/// candle's reader (`candle_core::pickle`) lets the zip crate detect where the archive starts,
/// which zip 9.1–9.9 gets wrong for torch's files whose folder inside (named after the file when
/// saved) is 21 characters long: it takes the second directory entry for the first, and the file
/// does not open. torch always writes the archive from the file's first byte.
fn read_torch_file(path: &Path, key: Option<&str>) -> candle_core::Result<Vec<(String, Tensor)>> {
    use candle_core::pickle::{Object, Stack};
    use std::io::Read;
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic)?;
    if &magic != b"PK" {
        candle_core::bail!(
            "not a zip archive: saved in PyTorch's format from before 1.6? Save it again with a newer PyTorch: \
             torch.save(torch.load(FILE), FILE)"
        );
    }
    let at_start = zip::read::Config { archive_offset: zip::read::ArchiveOffset::Known(0) };
    let mut archive = zip::ZipArchive::with_config(at_start, file).map_err(candle_core::Error::wrap)?;
    let names = archive.file_names().collect::<Result<Vec<_>, _>>().map_err(candle_core::Error::wrap)?;
    let pickles: Vec<String> = names.into_iter().filter(|n| n.ends_with("data.pkl")).map(|n| n.into_owned()).collect();
    let mut tensors = Vec::new();
    for pickle in pickles {
        let mut stack = Stack::empty();
        stack.read_loop(&mut std::io::BufReader::new(archive.by_name(&pickle).map_err(candle_core::Error::wrap)?))?;
        let mut object = stack.finalize()?;
        if let Some(key) = key {
            object = match object {
                Object::Dict(entries) => {
                    entries.into_iter().find(|(k, _)| *k == Object::Unicode(key.into())).map(|(_, v)| v)
                }
                _ => None,
            }
            .unwrap_or(Object::None);
        }
        let Object::Dict(entries) = object else { continue };
        let folder = Path::new(pickle.strip_suffix(".pkl").unwrap_or(&pickle)).to_owned();
        for (name, value) in entries {
            // Entries that are not tensors (an epoch number, an optimizer's state) are passed over.
            let Ok(Some(info)) = value.into_tensor_info(name, &folder) else { continue };
            let layout = &info.layout;
            let fortran = layout.dims().len() > 1 && layout.is_fortran_contiguous();
            if !layout.is_contiguous() && !fortran {
                candle_core::bail!("tensor {} is stored with gaps between its values ({layout:?})", info.name);
            }
            let element = info.dtype.size_in_bytes();
            let mut stored = archive.by_name(&info.path).map_err(candle_core::Error::wrap)?;
            std::io::copy(&mut (&mut stored).take((layout.start_offset() * element) as u64), &mut std::io::sink())?;
            let mut bytes = vec![0u8; layout.shape().elem_count() * element];
            stored.read_exact(&mut bytes)?;
            let tensor = if fortran {
                // Column-major: read with the dimensions reversed, then transposed back.
                let reversed: Vec<usize> = layout.dims().iter().rev().copied().collect();
                let rank = reversed.len();
                Tensor::from_raw_buffer(&bytes, info.dtype, &reversed, &Device::Cpu)?
                    .permute((0..rank).rev().collect::<Vec<_>>())?
            } else {
                Tensor::from_raw_buffer(&bytes, info.dtype, layout.dims(), &Device::Cpu)?
            };
            tensors.push((info.name, tensor));
        }
    }
    Ok(tensors)
}

/// `file.pt#ARCH` or `file.pt` (its architecture read from its name, e.g. `RemoteCLIP-ViT-B-32.pt`):
/// a bare OpenCLIP state dict and its architecture. `None` when `model` names no such file.
pub fn bare_state_dict(model: &str) -> Option<(&Path, String)> {
    let (file, arch) = match model.rsplit_once('#') {
        Some((file, arch)) if Path::new(file).is_file() => (Path::new(file), Some(arch.to_string())),
        _ => (Path::new(model), None),
    };
    if !file.is_file() {
        return None;
    }
    // With no architecture to be found, `from_arch("")` reports the names it knows.
    Some((file, arch.or_else(|| openclip::arch_from_file_name(file)).unwrap_or_default()))
}

fn looks_like_repo_id(model: &str) -> bool {
    let id = model.split('@').next().unwrap_or_default();
    let mut parts = id.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.chars().all(|c| c == '.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}
