//! The GPU's side of the encoders, where candle's own ops cost the most. Batches of pictures go
//! up through a page-locked buffer ([`upload_planes`]). Linear layers run through cuBLASLt with the
//! bias (and, after attention and the MLP, the residual) added in the product's epilogue, as
//! PyTorch's `addmm` does: candle's matmul followed by its broadcasting add wrote every output
//! twice, and that add alone took 21% of the ViT-B/32 image tower on an H200 (benches/README.md).
//! f32 products run with f32 compute (no TF32, as the reference computes); f16 and bf16 products
//! on tensor cores with f32 sums.

use std::sync::{Arc, Mutex};

use candle_core::cuda_backend::cudarc::cublaslt::{result as lt, sys};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, PinnedHostSlice};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, DeviceId};
use candle_core::op::BackpropOp;
use candle_core::{DType, Storage, Tensor};

use crate::model::preprocess::gather_planes;

/// cuBLASLt's recommended workspace on Hopper (32 MiB; 4 MiB suffice before it).
const WORKSPACE_BYTES: usize = 32 << 20;

/// One cuBLASLt handle and workspace per GPU, made on first use.
struct Handle {
    device: DeviceId,
    raw: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
}

// SAFETY: a cuBLASLt handle may be used from any thread; the workspace is only ever used by
// products queued on the device's one stream, which runs them in order.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

fn handle(dev: &CudaDevice) -> candle_core::Result<Arc<Handle>> {
    static HANDLES: Mutex<Vec<Arc<Handle>>> = Mutex::new(Vec::new());
    let mut handles = HANDLES.lock().expect("cuBLASLt handle list poisoned");
    if let Some(h) = handles.iter().find(|h| h.device == dev.id()) {
        return Ok(h.clone());
    }
    let raw = lt::create_handle().map_err(candle_core::Error::wrap)?;
    // SAFETY: the workspace is scratch space that cuBLASLt overwrites before reading.
    let workspace = unsafe { dev.alloc::<u8>(WORKSPACE_BYTES)? };
    let h = Arc::new(Handle { device: dev.id(), raw, workspace });
    handles.push(h.clone());
    Ok(h)
}

/// `x W^T + b (+ residual)`: `x` (rows, in_dim), `weight_t` = `W^T` (in_dim, out_dim) contiguous,
/// `bias` (out_dim), `residual` (rows, out_dim); all on one CUDA device in one dtype. `None` where
/// cuBLASLt has no algorithm for these shapes (the caller then uses candle's ops).
pub fn linear(
    x: &Tensor,
    weight_t: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    let (rows, out_dim) = (x.dim(0)?, weight_t.dim(1)?);
    let out = typed_product(x, weight_t, bias, residual, 1)?;
    Ok(out.map(|out| Tensor::from_storage(Storage::Cuda(out), (rows, out_dim), BackpropOp::none(), false)))
}

/// `x W^T + b` with the output's `parts` equal column blocks each written whole, one after the
/// other: (parts, rows, out_dim / parts). One batched product, the weight's blocks read in place;
/// attention takes its heads' q, k and v so without a strided copy (four of those were a third of
/// an f16 encoder layer on an H200: candle's copy kernel moves a (b, s, h, d) view at ~300 GB/s).
pub fn linear_split(x: &Tensor, weight_t: &Tensor, bias: &Tensor, parts: usize) -> candle_core::Result<Option<Tensor>> {
    let (rows, out_dim) = (x.dim(0)?, weight_t.dim(1)?);
    if parts == 0 || out_dim % parts != 0 {
        candle_core::bail!("cuBLASLt linear layer: {out_dim} outputs do not split into {parts} parts");
    }
    let out = typed_product(x, weight_t, bias, None, parts)?;
    let shape = (parts, rows, out_dim / parts);
    Ok(out.map(|out| Tensor::from_storage(Storage::Cuda(out), shape, BackpropOp::none(), false)))
}

fn typed_product(
    x: &Tensor,
    weight_t: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    parts: usize,
) -> candle_core::Result<Option<CudaStorage>> {
    let x = x.contiguous()?;
    let residual = residual.map(|r| r.contiguous()).transpose()?;
    let residual = residual.as_ref();
    match x.dtype() {
        DType::F32 => product::<f32>(&x, weight_t, bias, residual, parts, sys::cudaDataType_t::CUDA_R_32F),
        DType::F16 => product::<half::f16>(&x, weight_t, bias, residual, parts, sys::cudaDataType_t::CUDA_R_16F),
        DType::BF16 => product::<half::bf16>(&x, weight_t, bias, residual, parts, sys::cudaDataType_t::CUDA_R_16BF),
        dtype => candle_core::bail!("cuBLASLt linear layer: unsupported dtype {dtype:?}"),
    }
}

/// Frees cuBLASLt descriptors however the product ends.
struct Descriptors {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: Vec<sys::cublasLtMatrixLayout_t>,
    pref: sys::cublasLtMatmulPreference_t,
}

impl Drop for Descriptors {
    fn drop(&mut self) {
        // SAFETY: each was created once in `product` (null: not created) and is destroyed once
        // here; errors cannot be handled.
        unsafe {
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
            for &layout in &self.layouts {
                let _ = lt::destroy_matrix_layout(layout);
            }
            if !self.pref.is_null() {
                let _ = lt::destroy_matmul_pref(self.pref);
            }
        }
    }
}

fn product<T: CudaDType + DeviceRepr>(
    x: &Tensor,
    weight_t: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    parts: usize,
    data_type: sys::cudaDataType,
) -> candle_core::Result<Option<CudaStorage>> {
    let (rows, in_dim) = x.dims2()?;
    let (w_in, out_dim) = weight_t.dims2()?;
    if w_in != in_dim || !weight_t.is_contiguous() || bias.dims1()? != out_dim || (parts > 1 && residual.is_some()) {
        candle_core::bail!(
            "cuBLASLt linear layer: x {:?}, W^T {:?}, bias {:?}",
            x.dims(),
            weight_t.dims(),
            bias.dims()
        );
    }
    let wrap = candle_core::Error::wrap;
    // candle's storage behind each tensor, from the tensor's first element.
    let (x_storage, x_layout) = x.storage_and_layout();
    let (w_storage, w_layout) = weight_t.storage_and_layout();
    let (b_storage, b_layout) = bias.storage_and_layout();
    let residual = residual.map(|r| r.storage_and_layout());
    fn cuda(s: &Storage) -> candle_core::Result<&CudaStorage> {
        match s {
            Storage::Cuda(s) => Ok(s),
            _ => candle_core::bail!("cuBLASLt linear layer: a tensor is not on the GPU"),
        }
    }
    let x_cuda = cuda(&x_storage)?;
    let dev = x_cuda.device.clone();
    let stream = dev.cuda_stream();
    let x_view = x_cuda.as_cuda_slice::<T>()?.slice(x_layout.start_offset()..);
    let w_view = cuda(&w_storage)?.as_cuda_slice::<T>()?.slice(w_layout.start_offset()..);
    let b_view = cuda(&b_storage)?.as_cuda_slice::<T>()?.slice(b_layout.start_offset()..);
    let r_view = match &residual {
        Some((_, r_layout)) if r_layout.dims() != [rows, out_dim] => {
            candle_core::bail!("cuBLASLt linear layer: residual {:?} for output ({rows}, {out_dim})", r_layout.dims())
        }
        Some((r_storage, r_layout)) => Some(cuda(r_storage)?.as_cuda_slice::<T>()?.slice(r_layout.start_offset()..)),
        None => None,
    };
    // SAFETY: every element is written by the product before anyone reads it.
    let mut out: CudaSlice<T> = unsafe { dev.alloc::<T>(rows * out_dim)? };
    let handle = handle(&dev)?;

    // cuBLASLt is column-major: a row-major (r, c) matrix is its column-major (c, r). So the
    // row-major Y = X W^T is, column-major, Y^T (out, rows) = W (out, in) · X^T (in, rows), where
    // the row-major W^T (in, out) is exactly the column-major W and X (rows, in) is X^T: no
    // transposes. The bias runs along Y^T's rows, which is cuBLASLt's bias epilogue. Split into
    // parts, part j is the product of W's rows j*part_dim.. (at offset j*part_dim, leading
    // dimension out_dim) with the same X, written as its own (part_dim, rows) block.
    // SAFETY: descriptors are created and destroyed here; the pointers are device memory of the
    // sizes described, kept alive (with candle's stream synchronisation) until after the launch.
    unsafe {
        // Filled one at a time, so that whatever was created is freed if a later step fails.
        let mut d = Descriptors { desc: std::ptr::null_mut(), layouts: Vec::new(), pref: std::ptr::null_mut() };
        d.desc = lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType_t::CUDA_R_32F)
            .map_err(wrap)?;
        let part_dim = out_dim / parts;
        let (count, w_stride, x_stride, out_stride) = (parts as i32, part_dim as i64, 0i64, (part_dim * rows) as i64);
        for (rows, cols, ld, stride) in [
            (part_dim, in_dim, out_dim, w_stride),
            (in_dim, rows, in_dim, x_stride),
            (part_dim, rows, part_dim, out_stride),
        ] {
            let layout = lt::create_matrix_layout(data_type, rows as u64, cols as u64, ld as i64).map_err(wrap)?;
            d.layouts.push(layout);
            if parts > 1 {
                let set = |attr, value: *const std::ffi::c_void, size| {
                    lt::set_matrix_layout_attribute(layout, attr, value, size).map_err(wrap)
                };
                set(
                    sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                    (&count as *const i32).cast(),
                    std::mem::size_of::<i32>(),
                )?;
                set(
                    sys::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                    (&stride as *const i64).cast(),
                    std::mem::size_of::<i64>(),
                )?;
            }
        }
        d.pref = lt::create_matmul_pref().map_err(wrap)?;
        let (b_ptr, _b_sync) = b_view.device_ptr(&stream);
        let epilogue = sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS;
        let set_desc =
            |attr, value: *const std::ffi::c_void, size| lt::set_matmul_desc_attribute(d.desc, attr, value, size);
        set_desc(
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE,
            (&epilogue as *const sys::cublasLtEpilogue_t).cast(),
            std::mem::size_of::<sys::cublasLtEpilogue_t>(),
        )
        .map_err(wrap)?;
        set_desc(
            sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
            (&b_ptr as *const u64).cast(),
            std::mem::size_of_val(&b_ptr),
        )
        .map_err(wrap)?;
        if parts > 1 {
            set_desc(
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                (&w_stride as *const i64).cast(),
                std::mem::size_of::<i64>(),
            )
            .map_err(wrap)?;
        }
        lt::set_matmul_pref_attribute(
            d.pref,
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            (&WORKSPACE_BYTES as *const usize).cast(),
            std::mem::size_of::<usize>(),
        )
        .map_err(wrap)?;
        let (a_layout, b_layout, d_layout) = (d.layouts[0], d.layouts[1], d.layouts[2]);
        let heuristic =
            match lt::get_matmul_algo_heuristic(handle.raw, d.desc, a_layout, b_layout, d_layout, d_layout, d.pref) {
                Ok(heuristic) => heuristic,
                Err(e) if e.0 == sys::cublasStatus_t::CUBLAS_STATUS_NOT_SUPPORTED => return Ok(None),
                Err(e) => return Err(wrap(e)),
            };
        let (w_ptr, _w_sync) = w_view.device_ptr(&stream);
        let (x_ptr, _x_sync) = x_view.device_ptr(&stream);
        let (out_ptr, _out_sync) = out.device_ptr_mut(&stream);
        let (workspace_ptr, _ws_sync) = handle.workspace.device_ptr(&stream);
        // With a residual, C is the residual and beta 1: D = W·X^T + bias + residual.
        let residual_ptr = r_view.as_ref().map(|r| r.device_ptr(&stream));
        let (c_ptr, beta) = match &residual_ptr {
            Some((ptr, _)) => (*ptr, 1f32),
            None => (out_ptr, 0f32),
        };
        let alpha = 1f32;
        lt::matmul(
            handle.raw,
            d.desc,
            (&alpha as *const f32).cast(),
            (&beta as *const f32).cast(),
            w_ptr as *const _,
            a_layout,
            x_ptr as *const _,
            b_layout,
            c_ptr as *const _,
            d_layout,
            out_ptr as *mut _,
            d_layout,
            &heuristic.algo,
            workspace_ptr as *mut _,
            WORKSPACE_BYTES,
            stream.cu_stream() as *mut _,
        )
        .map_err(wrap)?;
    }
    Ok(Some(CudaStorage::wrap_cuda_slice(out, dev)))
}

/// A page-locked host buffer per GPU, kept from one batch to the next (pinning a buffer takes
/// longer than copying it).
struct Staging {
    device: DeviceId,
    buffer: PinnedHostSlice<u8>,
}

/// Copies a batch of preprocessed pictures' bytes ((3, h, w) each) to the GPU as one u8 tensor of
/// `shape` (3, n, h, w), as [`gather_planes`] lays them out. They are assembled on all cores
/// straight into a page-locked buffer, from which the GPU copies at full speed: assembling a
/// pageable batch on one thread and copying from it took most of a batch's time once the tower
/// ran in f16 (benches/README.md, GPU).
pub fn upload_planes(
    rows: &[&[u8]],
    shape: (usize, usize, usize, usize),
    dev: &CudaDevice,
) -> candle_core::Result<Tensor> {
    static STAGING: Mutex<Vec<Staging>> = Mutex::new(Vec::new());
    let row_len = rows.first().map_or(0, |r| r.len());
    let len = rows.len() * row_len;
    if shape.0 * shape.1 * shape.2 * shape.3 != len || rows.iter().any(|r| r.len() != row_len) {
        candle_core::bail!("upload of {} rows of {row_len} values as {shape:?}", rows.len());
    }
    let mut staging = STAGING.lock().expect("staging buffer list poisoned");
    let slot = match staging.iter().position(|s| s.device == dev.id()) {
        Some(slot) => slot,
        None => {
            staging.push(Staging { device: dev.id(), buffer: pinned(dev, len)? });
            staging.len() - 1
        }
    };
    if staging[slot].buffer.len() < len {
        staging[slot].buffer = pinned(dev, len)?;
    }
    let buffer = &mut staging[slot].buffer;
    let host = buffer.as_mut_slice().map_err(candle_core::Error::wrap)?; // waits for its last copy
    gather_planes(rows, &mut host[..len]);
    // The whole buffer is copied (a smaller last batch copies a few spare bytes) and the tensor
    // narrowed to the batch: memcpy wants source and destination of one length.
    // SAFETY: every element is written by the copy below before it is read.
    let mut on_gpu = unsafe { dev.alloc::<u8>(buffer.len())? };
    dev.cuda_stream().memcpy_htod(&*buffer, &mut on_gpu).map_err(candle_core::Error::wrap)?;
    let total = on_gpu.len();
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(on_gpu, dev.clone()));
    Tensor::from_storage(storage, total, BackpropOp::none(), false).narrow(0, 0, len)?.reshape(shape)
}

fn pinned(dev: &CudaDevice, len: usize) -> candle_core::Result<PinnedHostSlice<u8>> {
    // SAFETY: the buffer is only read by copies after `upload_planes` has written it.
    unsafe { dev.cuda_stream().context().alloc_pinned::<u8>(len) }.map_err(candle_core::Error::wrap)
}
