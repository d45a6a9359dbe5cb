//! Where a CLIP checkpoint comes from: a local folder, or a Hugging Face repo id fetched once
//! into the hub's standard cache (`hub.rs`: `HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `HF_TOKEN`
//! honoured).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use super::clip::{Towers, TEXT_TOKEN_TABLE};
use super::config::read_json;
use super::hub::HubRepo;
use super::mclip::{self, MClipConfig};
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
    /// dict), `source` naming where it came from; `text_model`: the `config.json` of the Hugging
    /// Face model its text tower is built from, if it is.
    OpenClip { config: Box<OpenClipConfig>, source: PathBuf, text_model: Option<PathBuf> },
    /// M-CLIP's `config.json` (`model_type` "M-CLIP") + weights for the text tower, the
    /// `config.json` of the encoder it is (`text_model`), and the CLIP checkpoint whose image
    /// tower it pairs with (see `mclip.rs`).
    MClip { config: PathBuf, mclip: MClipConfig, text_model: PathBuf, image: Box<CheckpointFiles> },
}

const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
const OPEN_CLIP_WEIGHT_FILES: [&str; 2] = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];

impl CheckpointFiles {
    /// Resolves `model` — a folder, a bare OpenCLIP state dict (`file.pt`, optionally
    /// `file.pt#ARCH`), or `owner/name[@revision]` on the hub — to local files. A folder or
    /// repository with `#ARCH` is read as OpenCLIP weights of that architecture, whatever
    /// config it has: open_clip's own table publishes some (LAION's XLM-RoBERTa ones) as
    /// `open_clip_pytorch_model.bin` alone.
    pub fn resolve(model: &str) -> Result<Self> {
        let local = |folder: &Path| {
            let folder = folder.to_owned();
            move |name: &str| Ok(Some(folder.join(name)).filter(|p| p.is_file()))
        };
        let path = Path::new(model);
        if path.is_dir() {
            return Self::from_source(model, None, local(path));
        }
        if let Some((file, arch)) = bare_state_dict(model) {
            return Self::bare(file, arch);
        }
        let (source, arch) = match model.rsplit_once('#') {
            Some((source, arch)) => (source, Some(arch)),
            None => (model, None),
        };
        if arch.is_some() && Path::new(source).is_dir() {
            return Self::from_source(source, arch, local(Path::new(source)));
        }
        if looks_like_repo_id(source) {
            return Self::from_hub(source, arch);
        }
        Err(Error::MissingModelFile {
            path: path.to_owned(),
            missing: "such folder or file (and it is not a Hugging Face repo id like openai/clip-vit-base-patch32)"
                .into(),
        })
    }

    /// A folder or hub repository whose files `get` fetches (`None`: no such file): the
    /// Hugging Face layout where it is complete, else OpenCLIP's; OpenCLIP weights of `arch`
    /// where one is given.
    fn from_source(label: &str, arch: Option<&str>, get: impl Fn(&str) -> Result<Option<PathBuf>>) -> Result<Self> {
        let first = |names: &[&str]| -> Result<Option<PathBuf>> {
            for name in names {
                if let Some(p) = get(name)? {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        };
        let missing = |what: &str| Error::MissingModelFile { path: label.into(), missing: what.into() };
        let open_clip_weights = || {
            first(&OPEN_CLIP_WEIGHT_FILES)?
                .ok_or_else(|| missing("open_clip_model.safetensors or open_clip_pytorch_model.bin"))
        };
        let own_tokenizer = || -> Result<_> { Ok((get("tokenizer.json")?, get("tokenizer_config.json")?)) };
        // An M-CLIP says so in its config.json; `#` then names its image model, not an OpenCLIP
        // architecture (which is a built-in name or a model config JSON file).
        let names_an_arch = arch.is_some_and(|a| {
            openclip::builtin_arch_names().iter().any(|n| n == a)
                || Path::new(a).is_file() && Path::new(a).extension().is_some_and(|e| e == "json")
        });
        let config = if names_an_arch { None } else { get("config.json")? };
        if let Some(config) = &config {
            if let Some(mclip) = MClipConfig::from_file(config)? {
                return Self::mclip(label, config.clone(), mclip, arch, &get);
            }
        }
        if let Some(arch) = arch {
            let config = OpenClipConfig::from_arch(arch)?;
            let weights = open_clip_weights()?;
            let text = hf_text_model(&config, own_tokenizer()?)?;
            let source = weights.clone();
            return Ok(Self {
                layout: Layout::OpenClip { config: Box::new(config), source, text_model: text.config },
                weights,
                tokenizer: text.tokenizer,
                preprocessor: None,
                tokenizer_config: text.tokenizer_config,
            });
        }
        // The repositories timm and open_clip share (timm/vit_base_patch16_clip_224.openai) hold
        // timm's config.json and weights of the image tower beside OpenCLIP's files.
        if let Some(config) = config.filter(|config| !is_timm_config(config)) {
            if let Some(weights) = first(&WEIGHT_FILES)? {
                return Ok(Self {
                    layout: Layout::HuggingFace { config },
                    // BERT's vocab.txt where a Chinese-CLIP repository ships no tokenizer.json.
                    tokenizer: Some(
                        get("tokenizer.json")?
                            .or(get("vocab.txt")?)
                            .ok_or_else(|| missing("tokenizer.json (or BERT's vocab.txt)"))?,
                    ),
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
        let weights = open_clip_weights()?;
        let config = OpenClipConfig::from_hub_file(&source)?;
        let text = hf_text_model(&config, own_tokenizer()?)?;
        Ok(Self {
            layout: Layout::OpenClip { config: Box::new(config), source, text_model: text.config },
            weights,
            tokenizer: text.tokenizer,
            preprocessor: None,
            tokenizer_config: text.tokenizer_config,
        })
    }

    /// An M-CLIP (`config`: its `config.json`) whose files `get` fetches, its image tower from
    /// `image_model` or, where that is not given, the CLIP its name says it pairs with.
    fn mclip(
        label: &str,
        config: PathBuf,
        mclip: MClipConfig,
        image_model: Option<&str>,
        get: &impl Fn(&str) -> Result<Option<PathBuf>>,
    ) -> Result<Self> {
        let unpaired = || Error::BadCheckpoint {
            path: label.into(),
            reason: format!(
                "this M-CLIP's text tower was distilled to a CLIP's image embeddings, and it does not say which: \
                 name that CLIP after '#', e.g. --model '{label}#openai/clip-vit-base-patch32'"
            ),
        };
        let image_model = image_model.or_else(|| MClipConfig::image_model_of(label)).ok_or_else(unpaired)?;
        let weights = WEIGHT_FILES.iter().map(|name| get(name)).find_map(Result::transpose).transpose()?;
        let weights = weights.ok_or_else(|| Error::MissingModelFile {
            path: label.into(),
            missing: "model.safetensors or pytorch_model.bin (M-CLIP's text tower)".into(),
        })?;
        let key = "the M-CLIP config's modelBase";
        let text_model = text_model_file(&mclip.model_base, "config.json", key)?;
        // The checkpoint's own tokenizer, else its encoder's.
        let (tokenizer, tokenizer_config) = match get("tokenizer.json")?.or(get("vocab.txt")?) {
            Some(own) => (own, get("tokenizer_config.json")?),
            None => (
                text_model_file(&mclip.model_base, "tokenizer.json", key)?,
                text_model_file_if_any(&mclip.model_base, "tokenizer_config.json", key)?,
            ),
        };
        let image = Self::resolve(image_model)?;
        if matches!(image.layout, Layout::MClip { .. }) {
            return Err(Error::BadCheckpoint {
                path: image_model.into(),
                reason: "an M-CLIP's image model must be a CLIP, not another M-CLIP".into(),
            });
        }
        Ok(Self {
            layout: Layout::MClip { config, mclip, text_model, image: Box::new(image) },
            weights,
            tokenizer: Some(tokenizer),
            preprocessor: None,
            tokenizer_config,
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
        let text = hf_text_model(&config, (None, None))?;
        Ok(Self {
            layout: Layout::OpenClip { config: Box::new(config), source: file.to_owned(), text_model: text.config },
            weights: file.to_owned(),
            tokenizer: text.tokenizer,
            preprocessor: None,
            tokenizer_config: text.tokenizer_config,
        })
    }

    fn from_hub(model: &str, arch: Option<&str>) -> Result<Self> {
        let (repo_id, revision) = match model.split_once('@') {
            Some((id, rev)) => (id.to_string(), rev.to_string()),
            None if model == DEFAULT_MODEL => (model.to_string(), DEFAULT_MODEL_REVISION.to_string()),
            None => (model.to_string(), "main".to_string()),
        };
        let offline = hub_offline();
        let hub = HubRepo::new(&repo_id, &revision, offline)?;
        Self::from_source(&repo_id, arch, |file| hub.fetch(file)).map_err(|e| match e {
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

    /// Opens the checkpoint's tensors for reading one by one, by `transformers`' names; of a
    /// checkpoint renamed at load, only those of `towers`.
    pub fn open_tensors(&self, towers: Towers) -> Result<CheckpointTensors> {
        let bad = |e: candle_core::Error| Error::BadCheckpoint { path: self.weights.clone(), reason: e.to_string() };
        let safetensors = self.weights.extension().is_some_and(|e| e == "safetensors");
        let mapped = || -> Result<Arc<candle_core::safetensors::MmapedSafetensors>> {
            // SAFETY: the mapping is read-only. Hub cache blobs are content-addressed and never
            // rewritten in place; a local checkpoint rewritten while it loads is not guarded.
            Ok(Arc::new(unsafe { candle_core::safetensors::MmapedSafetensors::new(&self.weights) }.map_err(bad)?))
        };
        match (&self.layout, safetensors) {
            // Renamed at load, all but the text tower's token table, which stays in the file.
            (Layout::OpenClip { .. }, true) => {
                let file = mapped()?;
                let (tables, others): (Vec<String>, Vec<String>) = file
                    .tensors()
                    .into_iter()
                    .map(|(name, _)| name)
                    .filter(|name| openclip::is_of(name, towers))
                    .partition(|name| openclip::is_token_table(name));
                let others = others
                    .into_iter()
                    .map(|name| file.load(&name, &Device::Cpu).map(|tensor| (name, tensor)))
                    .collect::<candle_core::Result<Vec<_>>>()
                    .map_err(bad)?;
                let in_place = tables.into_iter().map(|name| (TEXT_TOKEN_TABLE.to_string(), name)).collect();
                Ok(CheckpointTensors {
                    loaded: openclip::to_clip_names(others, &self.weights)?,
                    mapped: Some((file, in_place)),
                })
            }
            (Layout::OpenClip { .. }, false) => {
                let mut tensors = read_pickled_state_dict(&self.weights).map_err(bad)?;
                tensors.retain(|(name, _)| openclip::is_of(name, towers));
                Ok(CheckpointTensors::loaded(openclip::to_clip_names(tensors, &self.weights)?))
            }
            (Layout::HuggingFace { .. }, true) => {
                let file = mapped()?;
                let names: Vec<String> = file.tensors().into_iter().map(|(name, _)| name).collect();
                if !openclip::has_bert_text_names(names.iter()) {
                    return Ok(CheckpointTensors::in_place(file));
                }
                let tensors =
                    candle_core::safetensors::load(&self.weights, &Device::Cpu).map_err(bad)?.into_iter().collect();
                Ok(CheckpointTensors::loaded(openclip::with_bert_text_renamed(tensors, &self.weights)?))
            }
            (Layout::HuggingFace { .. }, false) => {
                let tensors = read_torch_file(&self.weights, None).map_err(bad)?;
                Ok(CheckpointTensors::loaded(openclip::with_bert_text_renamed(tensors, &self.weights)?))
            }
            // The text tower's alone: the image tower's are its image model's.
            (Layout::MClip { .. }, in_safetensors) => {
                let tensors = match in_safetensors {
                    true => {
                        candle_core::safetensors::load(&self.weights, &Device::Cpu).map_err(bad)?.into_iter().collect()
                    }
                    false => read_torch_file(&self.weights, None).map_err(bad)?,
                };
                Ok(CheckpointTensors::loaded(mclip::to_clip_names(tensors, &self.weights)?))
            }
        }
    }
}

/// A checkpoint's tensors, read one at a time as the model asks for them: a weight that is
/// transposed or packed at load is then never held twice, and a 600 MB checkpoint is not first
/// copied whole into memory (measured: ViT-B/32 load 3.4 s -> see benches/README.md).
pub struct CheckpointTensors {
    /// Read at load, by the towers' names: a pickle's tensors, and those renamed from another
    /// layout (OpenCLIP's, Chinese-CLIP's BERT).
    loaded: HashMap<String, Tensor>,
    /// A memory-mapped `*.safetensors` and the tensors read from it where they lie: by the
    /// towers' name, the name in the file.
    mapped: Option<(Arc<candle_core::safetensors::MmapedSafetensors>, HashMap<String, String>)>,
}

/// A table whose rows are read from the memory-mapped checkpoint as they are asked for: a text
/// tower's token embeddings, of which a query reads a dozen rows. Multilingual vocabularies
/// make them most of the tower (MetaCLIP 2's 901,629 tokens: 3.7 GB in f32, 75% of a ViT-H
/// text tower; SigLIP 2's 256,000: 40%), so they are neither copied nor converted at load.
pub struct MappedTable {
    file: Arc<candle_core::safetensors::MmapedSafetensors>,
    name: String,
    /// As stored: f32, f16 or bf16.
    dtype: DType,
    rows: usize,
    width: usize,
}

impl MappedTable {
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.width)
    }

    /// The rows `ids`, in order, as an f32 (ids, width) tensor on the CPU.
    pub fn rows(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let view = self.file.get(&self.name)?;
        let row_bytes = self.width * self.dtype.size_in_bytes();
        let mut bytes = Vec::with_capacity(ids.len() * row_bytes);
        for &id in ids {
            let start = id as usize * row_bytes;
            let row = view.data().get(start..start + row_bytes).ok_or_else(|| {
                candle_core::Error::Msg(format!("token {id} is past the {} rows of {}", self.rows, self.name))
            })?;
            bytes.extend_from_slice(row);
        }
        Tensor::from_raw_buffer(&bytes, self.dtype, &[ids.len(), self.width], &Device::Cpu)?.to_dtype(DType::F32)
    }
}

impl CheckpointTensors {
    fn loaded(loaded: HashMap<String, Tensor>) -> Self {
        Self { loaded, mapped: None }
    }

    /// Every tensor of a mapped file, under its own name.
    fn in_place(file: Arc<candle_core::safetensors::MmapedSafetensors>) -> Self {
        let names = file.tensors().into_iter().map(|(name, _)| (name.clone(), name)).collect();
        Self { loaded: HashMap::new(), mapped: Some((file, names)) }
    }

    /// The 2-D table `name` read in place ([`MappedTable`]), where the checkpoint is mapped and
    /// stores it in a float type.
    pub fn mapped_table(&self, name: &str) -> candle_core::Result<Option<MappedTable>> {
        let Some((file, names)) = &self.mapped else { return Ok(None) };
        let Some(stored) = names.get(name) else { return Ok(None) };
        let view = file.get(stored)?;
        let dtype = DType::try_from(view.dtype())?;
        match (view.shape(), dtype) {
            (&[rows, width], DType::F32 | DType::F16 | DType::BF16) => {
                Ok(Some(MappedTable { file: file.clone(), name: stored.clone(), dtype, rows, width }))
            }
            _ => Ok(None),
        }
    }

    /// The tensor called `name` as plain f32 on `device` (no autograd variables: a `VarMap`
    /// keeps gradient bookkeeping alive, measured 4x the memory), or `None` when absent.
    pub fn get(&self, name: &str, device: &Device) -> candle_core::Result<Option<Tensor>> {
        let tensor = match (self.loaded.get(name), &self.mapped) {
            (Some(tensor), _) => tensor.clone(),
            (None, Some((file, names))) if names.contains_key(name) => file.load(&names[name], &Device::Cpu)?,
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
    use std::io::Read;
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_err() {
        candle_core::bail!("the file is empty or cut short (an interrupted download or copy?)");
    }
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
        for info in read_tensor_records(&mut archive, &pickle, key, path)? {
            tensors.push((info.name.clone(), read_stored_tensor(&mut archive, &info)?));
        }
    }
    Ok(tensors)
}

/// The largest `data.pkl` read: a state dict's names and tensor records take tens to hundreds of
/// kilobytes even for the largest models, and candle's reader recurses through nested objects,
/// so that a larger pickle of nested tuples could overflow the stack.
const MAX_PICKLE_BYTES: u64 = 4 << 20;

/// The records (name, type, shape, storage) of the tensors in a pickled dict, or in its `key`
/// entry; entries that are not tensors (an epoch number, an optimizer's state) are passed over.
/// Read, and dropped, on a thread with a stack for the deepest nesting [`MAX_PICKLE_BYTES`] allows.
fn read_tensor_records(
    archive: &mut zip::ZipArchive<std::io::BufReader<std::fs::File>>,
    pickle: &str,
    key: Option<&str>,
    path: &Path,
) -> candle_core::Result<Vec<candle_core::pickle::TensorInfo>> {
    use candle_core::pickle::{Object, Stack};
    use std::io::Read;
    let mut entry = archive.by_name(pickle).map_err(candle_core::Error::wrap)?;
    if entry.size() > MAX_PICKLE_BYTES {
        candle_core::bail!("{pickle} is {} bytes: no state dict's is over {MAX_PICKLE_BYTES}", entry.size());
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    (&mut entry).take(MAX_PICKLE_BYTES + 1).read_to_end(&mut bytes)?;
    let key = key.map(str::to_string);
    let folder = Path::new(pickle.strip_suffix(".pkl").unwrap_or(pickle)).to_owned();
    let path = path.to_owned();
    let parse = move || -> candle_core::Result<Vec<candle_core::pickle::TensorInfo>> {
        let object = unwound(|| {
            let mut stack = Stack::empty();
            stack.read_loop(&mut std::io::Cursor::new(&bytes))?;
            stack.finalize()
        })?;
        let object = match (key, object) {
            (Some(key), Object::Dict(entries)) => entries
                .into_iter()
                .find(|(k, _)| *k == Object::Unicode(key.clone()))
                .map(|(_, v)| v)
                .unwrap_or(Object::None),
            (Some(_), _) => Object::None,
            (None, object) => object,
        };
        let Object::Dict(entries) = object else { return Ok(Vec::new()) };
        let mut records = Vec::new();
        for (name, value) in entries {
            let shown = match &name {
                Object::Unicode(name) => name.clone(),
                other => format!("{other:?}"),
            };
            match unwound(|| value.into_tensor_info(name, &folder)) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                // A tensor of a kind candle cannot read (int32, bool): fatal only if the model needs it.
                Err(e) => tracing::warn!("{}: tensor {shown} is left out: {e}", path.display()),
            }
        }
        Ok(records)
    };
    // One byte of pickle (a tuple opcode) can make one level of nesting, and dropping a level
    // took about 30 bytes of stack (300,000 levels overflowed the main thread's 8 MB).
    std::thread::Builder::new()
        .stack_size(MAX_PICKLE_BYTES as usize * 64)
        .spawn(parse)?
        .join()
        .unwrap_or_else(|_| candle_core::bail!("{pickle} could not be read"))
}

thread_local! {
    /// This thread is in [`unwound`]: a panic there is a malformed file, said as an error.
    static READING_PICKLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `read` with a panic inside candle's pickle reader (it indexes tuples a malformed file makes
/// too short) made an error, and not printed as a crash.
fn unwound<T>(read: impl FnOnce() -> candle_core::Result<T>) -> candle_core::Result<T> {
    static QUIET_WHILE_READING: std::sync::Once = std::sync::Once::new();
    QUIET_WHILE_READING.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |panic| {
            if !READING_PICKLE.with(std::cell::Cell::get) {
                report(panic);
            }
        }));
    });
    READING_PICKLE.with(|reading| reading.set(true));
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    READING_PICKLE.with(|reading| reading.set(false));
    read.unwrap_or_else(|_| candle_core::bail!("the pickle is malformed (not as torch.save writes it)"))
}

/// The values of one tensor a pickle describes, from its storage in the archive: held to the
/// storage's size before anything is allocated, in row-major order whatever its layout.
fn read_stored_tensor(
    archive: &mut zip::ZipArchive<std::io::BufReader<std::fs::File>>,
    info: &candle_core::pickle::TensorInfo,
) -> candle_core::Result<Tensor> {
    use std::io::Read;
    let layout = &info.layout;
    let fortran = layout.dims().len() > 1 && layout.is_fortran_contiguous();
    if !layout.is_contiguous() && !fortran {
        candle_core::bail!("tensor {} is stored with gaps between its values ({layout:?})", info.name);
    }
    let mut stored = archive.by_name(&info.path).map_err(candle_core::Error::wrap)?;
    // candle's layout gives the offset into the storage in bytes already.
    let start = layout.start_offset() as u64;
    let length = layout.shape().elem_count().checked_mul(info.dtype.size_in_bytes()).map(|n| n as u64);
    let Some(end) = length.and_then(|length| start.checked_add(length)).filter(|end| *end <= stored.size()) else {
        candle_core::bail!(
            "tensor {} claims more bytes ({:?} from {start}) than its storage holds ({})",
            info.name,
            layout.shape(),
            stored.size()
        );
    };
    std::io::copy(&mut (&mut stored).take(start), &mut std::io::sink())?;
    let mut bytes = vec![0u8; (end - start) as usize];
    stored
        .read_exact(&mut bytes)
        .map_err(|e| candle_core::Error::Msg(format!("tensor {}'s values are cut short: {e}", info.name)))?;
    if !fortran {
        return Tensor::from_raw_buffer(&bytes, info.dtype, layout.dims(), &Device::Cpu);
    }
    // Column-major: read with the dimensions reversed, transposed back, then laid out row-major
    // (an embedding table is looked up by rows, which needs them contiguous).
    let reversed: Vec<usize> = layout.dims().iter().rev().copied().collect();
    let rank = reversed.len();
    Tensor::from_raw_buffer(&bytes, info.dtype, &reversed, &Device::Cpu)?
        .permute((0..rank).rev().collect::<Vec<_>>())?
        .contiguous()
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

/// The text model files of an OpenCLIP checkpoint.
struct TextModelFiles {
    /// The `config.json` of the Hugging Face model its text tower is built from, if it is.
    config: Option<PathBuf>,
    tokenizer: Option<PathBuf>,
    tokenizer_config: Option<PathBuf>,
}

/// The files of the Hugging Face model an OpenCLIP text tower is built from (`hf_model_name`),
/// as open_clip reads them: its `config.json`, and `tokenizer.json` (with its
/// `tokenizer_config.json`) from `hf_tokenizer_name` unless the checkpoint has its own
/// (`open_clip.push_to_hf_hub` saves it beside the weights). SigLIP's text tower is open_clip's
/// own, with only a tokenizer named. `own` for every other text tower.
fn hf_text_model(config: &OpenClipConfig, own: (Option<PathBuf>, Option<PathBuf>)) -> Result<TextModelFiles> {
    let (model, tokenizer_name) = config.hf_text_names();
    let text_config = model.map(|model| text_model_file(&model, "config.json", "hf_model_name")).transpose()?;
    let (tokenizer, tokenizer_config) = match (own, tokenizer_name) {
        ((None, _), Some(name)) => {
            let key = "hf_tokenizer_name (or hf_model_name)";
            let tokenizer = text_model_file(&name, "tokenizer.json", key)?;
            (Some(tokenizer), text_model_file_if_any(&name, "tokenizer_config.json", key)?)
        }
        (own, _) => own,
    };
    Ok(TextModelFiles { config: text_config, tokenizer, tokenizer_config })
}

/// `file` of the model `name` (see [`text_model_file_if_any`]), which must have it.
fn text_model_file(name: &str, file: &str, key: &str) -> Result<PathBuf> {
    let missing = |why: &str| Error::BadCheckpoint {
        path: name.into(),
        reason: format!(
            "no {file}: {why}. The OpenCLIP config's {key} names this model, and its text tower is built from it as \
             open_clip builds it"
        ),
    };
    text_model_file_if_any(name, file, key)?.ok_or_else(|| match (Path::new(name).is_dir(), hub_offline()) {
        (true, _) => missing("the folder lacks it"),
        (false, true) => missing("it is not in the hub cache, and HF_HUB_OFFLINE is set (fetch it once online)"),
        (false, false) => missing("the hub repository has no such file"),
    })
}

/// `file` of the model `name`: a folder, else a hub repository (`xlm-roberta-base` as well as
/// `FacebookAI/xlm-roberta-base`, optionally `@revision`), fetched into the hub's cache.
fn text_model_file_if_any(name: &str, file: &str, key: &str) -> Result<Option<PathBuf>> {
    let folder = Path::new(name);
    if folder.is_dir() {
        return Ok(Some(folder.join(file)).filter(|p| p.is_file()));
    }
    if !matches!(hub_name_segments(name), Some(1 | 2)) {
        return Err(Error::BadCheckpoint {
            path: name.into(),
            reason: format!("the OpenCLIP config's {key} names no such folder, nor a hub repository id"),
        });
    }
    let (repo_id, revision) = name.split_once('@').unwrap_or((name, "main"));
    HubRepo::new(repo_id, revision, hub_offline())?.fetch(file)
}

/// Whether a `config.json` is timm's (it names an `architecture`, where `transformers`' name a
/// `model_type`).
fn is_timm_config(path: &Path) -> bool {
    let Ok(config) = read_json::<serde_json::Value>(path) else { return false };
    config.get("architecture").is_some() && config.get("model_type").is_none()
}

fn looks_like_repo_id(model: &str) -> bool {
    hub_name_segments(model) == Some(2)
}

/// How many parts a hub name (before any `@revision`) has, if it is one: names of letters,
/// digits, `-_.` joined by `/`.
fn hub_name_segments(model: &str) -> Option<usize> {
    let id = model.split('@').next().unwrap_or_default();
    let ok =
        |s: &str| !s.chars().all(|c| c == '.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    id.split('/').all(ok).then(|| id.split('/').count())
}

fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A pickle opcode stream's pieces, as `torch.save` writes them.
    fn text(s: &str) -> Vec<u8> {
        let mut out = vec![b'X'];
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
        out
    }

    fn small(n: u8) -> Vec<u8> {
        vec![b'K', n]
    }

    /// `{"w": tensor}` of f32 storage "0" holding `numel` values, viewed with `size`, `stride`
    /// and `offset` (in elements, as torch counts them).
    fn state_dict_pickle(size: [u8; 2], stride: [u8; 2], offset: u8, numel: u8) -> Vec<u8> {
        let mut p = b"\x80\x02}(".to_vec();
        p.extend(text("w"));
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        p.extend(text("storage"));
        p.extend(b"ctorch\nFloatStorage\n");
        p.extend(text("0"));
        p.extend(text("cpu"));
        p.extend(small(numel));
        p.extend(b"tQ");
        p.extend(small(offset));
        p.extend([small(size[0]), small(size[1])].concat());
        p.push(0x86);
        p.extend([small(stride[0]), small(stride[1])].concat());
        p.push(0x86);
        p.extend(b"\x89ccollections\nOrderedDict\n)RtRu.");
        p
    }

    fn torch_file(dir: &Path, pickle: &[u8], storage: &[f32]) -> PathBuf {
        let path = dir.join("model.bin");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("archive/data.pkl", stored).unwrap();
        zip.write_all(pickle).unwrap();
        zip.start_file("archive/data/0", stored).unwrap();
        zip.write_all(&storage.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        zip.finish().unwrap();
        path
    }

    fn values(path: &Path) -> candle_core::Result<(Vec<Vec<f32>>, bool)> {
        let tensors = read_torch_file(path, None)?;
        let (_, tensor) = tensors.into_iter().find(|(name, _)| name == "w").expect("w is read");
        Ok((tensor.to_vec2()?, tensor.is_contiguous()))
    }

    #[test]
    fn a_view_into_a_shared_storage_reads_its_own_values() {
        let dir = tempfile::tempdir().unwrap();
        // torch.save of `storage[2:6].view(2, 2)`: offset 2 elements into a storage of 6.
        let file = torch_file(dir.path(), &state_dict_pickle([2, 2], [2, 1], 2, 6), &[100., 101., 1., 2., 3., 4.]);
        assert_eq!(values(&file).unwrap().0, [[1., 2.], [3., 4.]]);
    }

    #[test]
    fn a_column_major_tensor_is_read_in_row_major_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = torch_file(dir.path(), &state_dict_pickle([2, 2], [1, 2], 0, 4), &[1., 2., 3., 4.]);
        let (rows, contiguous) = values(&file).unwrap();
        assert_eq!(rows, [[1., 3.], [2., 4.]]);
        assert!(contiguous, "an embedding table is looked up by rows");
    }

    /// A table read in place gives the rows the whole tensor gives, from f32, f16 and bf16
    /// files, and refuses a row past its end.
    #[test]
    fn a_mapped_table_reads_the_rows_the_loaded_one_holds() {
        let dir = tempfile::tempdir().unwrap();
        let table = Tensor::arange(0f32, 15.0, &Device::Cpu).unwrap().reshape((5, 3)).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let path = dir.path().join(format!("{dtype:?}.safetensors"));
            let stored = table.to_dtype(dtype).unwrap();
            candle_core::safetensors::save(&HashMap::from([("t".to_string(), stored)]), &path).unwrap();
            let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(&path) }.unwrap();
            let tensors = CheckpointTensors::in_place(Arc::new(file));
            let mapped = tensors.mapped_table("t").unwrap().expect("a 2-D float table is mapped");
            assert_eq!(mapped.dims(), (5, 3));
            let rows = mapped.rows(&[4, 0, 4]).unwrap();
            let held = tensors.get("t", &Device::Cpu).unwrap().unwrap();
            let expected = held.index_select(&Tensor::new(&[4u32, 0, 4], &Device::Cpu).unwrap(), 0).unwrap();
            assert_eq!(rows.to_vec2::<f32>().unwrap(), expected.to_vec2::<f32>().unwrap(), "{dtype:?}");
            assert!(mapped.rows(&[5]).is_err(), "{dtype:?}: a row past the table");
            assert!(tensors.mapped_table("absent").unwrap().is_none());
        }
    }

    #[test]
    fn malformed_pickles_are_errors_not_crashes() {
        let dir = tempfile::tempdir().unwrap();
        // A tensor whose shape claims far more values than its storage holds.
        let file = torch_file(dir.path(), &state_dict_pickle([255, 255], [255, 1], 0, 4), &[1., 2., 3., 4.]);
        assert!(values(&file).unwrap_err().to_string().contains("more bytes"));
        // A rebuild call without its arguments: candle's reader indexes past them.
        let mut short = b"\x80\x02}(".to_vec();
        short.extend(text("w"));
        short.extend(b"ctorch._utils\n_rebuild_tensor_v2\n)Ru.");
        let file = torch_file(dir.path(), &short, &[]);
        assert!(read_torch_file(&file, None).unwrap().is_empty(), "the entry is left out, with a warning");
        // A million nested tuples: read on a stack that holds them.
        let mut deep = b"\x80\x02}".to_vec();
        deep.extend(text("junk"));
        deep.push(b'N');
        deep.extend(std::iter::repeat_n(0x85, 1_000_000));
        deep.extend(b"s.");
        let file = torch_file(dir.path(), &deep, &[]);
        assert!(read_torch_file(&file, None).unwrap().is_empty());
        // Cut short, and empty.
        let whole =
            std::fs::read(torch_file(dir.path(), &state_dict_pickle([2, 2], [2, 1], 0, 4), &[1., 2., 3., 4.])).unwrap();
        for cut in [0, 1, whole.len() / 2] {
            let file = dir.path().join(format!("cut{cut}.bin"));
            std::fs::write(&file, &whole[..cut]).unwrap();
            assert!(read_torch_file(&file, None).is_err(), "cut at {cut}");
        }
    }
}
