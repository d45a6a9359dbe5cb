//! `search --vector FILE`: an embedding computed elsewhere, as JSON or NumPy's .npy.

use std::path::Path;

use anyhow::{bail, Context};

/// Reads one embedding: a JSON list of numbers, `imgsearch embed --json` output holding exactly
/// one embedding, or a .npy array of float16/32/64 of shape (dim,) or (1, dim).
pub fn read(path: &Path) -> anyhow::Result<Vec<f32>> {
    // A JSON list of 4,096 floats is under 100 KB.
    const MAX_VECTOR_FILE: u64 = 16 * 1024 * 1024;
    let bytes = imgsearch::ingest::walk::read_regular_file(path, MAX_VECTOR_FILE)
        .with_context(|| format!("cannot read vector file {}", path.display()))?;
    let parsed = if bytes.starts_with(NPY_MAGIC) { parse_npy(&bytes) } else { parse_json(&bytes) };
    parsed.with_context(|| format!("{} holds no usable vector", path.display()))
}

fn parse_json(bytes: &[u8]) -> anyhow::Result<Vec<f32>> {
    let json: serde_json::Value = serde_json::from_slice(bytes).context("it is neither a .npy file nor valid JSON")?;
    // `imgsearch embed --json`: {"model", "dim", "images": {path: [..]}, "texts": {text: [..]}}.
    let list = match &json {
        serde_json::Value::Object(fields) => {
            let embeddings: Vec<&serde_json::Value> = ["images", "texts"]
                .iter()
                .filter_map(|key| fields.get(*key).and_then(|v| v.as_object()))
                .flat_map(|map| map.values())
                .collect();
            match embeddings.as_slice() {
                [one] => *one,
                other => bail!(
                    "a JSON object must be `imgsearch embed --json` output with exactly one embedding; this one has {}",
                    other.len()
                ),
            }
        }
        list => list,
    };
    let numbers = list.as_array().context("expected a JSON list of numbers")?;
    numbers
        .iter()
        .map(|n| n.as_f64().map(|n| n as f32).context("the JSON list holds something other than numbers"))
        .collect()
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// NumPy's format (numpy.org/doc/stable/reference/generated/numpy.lib.format.html): magic,
/// version, header length (2 bytes in version 1, 4 after), a Python dict literal, the data.
fn parse_npy(bytes: &[u8]) -> anyhow::Result<Vec<f32>> {
    let version = *bytes.get(6).context("the .npy file is cut short")?;
    let (len_bytes, header_start) = if version == 1 { (2, 10) } else { (4, 12) };
    let len_field = bytes.get(8..8 + len_bytes).context("the .npy file is cut short")?;
    let header_len = len_field.iter().rev().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
    let header = bytes.get(header_start..header_start + header_len).context("the .npy header is cut short")?;
    let header = std::str::from_utf8(header).context("the .npy header is not text")?;
    let value_of = |key: &str| header.split(key).nth(1).map(|rest| rest.trim_start_matches([':', ' ', '\'']));
    let descr = value_of("'descr'").and_then(|v| v.split('\'').next()).context("the .npy header has no descr")?;
    let shape = value_of("'shape'")
        .and_then(|v| v.strip_prefix('(')?.split(')').next())
        .context("the .npy header has no shape")?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().context("the .npy shape is not a list of sizes"))
        .collect::<anyhow::Result<_>>()?;
    // Either shape holds one row, which reads the same in C and Fortran order.
    let count = match dims.as_slice() {
        [n] | [1, n] => *n,
        other => bail!("expected one vector, shape (dim,) or (1, dim); the array has shape {other:?}"),
    };
    let data = &bytes[header_start + header_len..];
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        "<f2" => 2,
        other => bail!("the .npy array holds {other:?}; save it as float32 (`a.astype('<f4')`)"),
    };
    // Not one byte more or less: a file cut or run on is not the vector its header describes.
    if Some(data.len()) != count.checked_mul(width) {
        bail!("the .npy header promises {count} numbers of {width} bytes, but {} bytes follow it", data.len());
    }
    Ok(match width {
        4 => data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect(),
        8 => data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
        _ => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn npy_vectors_of_each_float_width_and_shape_are_read() {
        let f4: Vec<u8> = [0.6f32, 0.8].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(parse_npy(&npy("<f4", "(2,)", &f4)).unwrap(), vec![0.6, 0.8]);
        assert_eq!(parse_npy(&npy("<f4", "(1, 2)", &f4)).unwrap(), vec![0.6, 0.8]);
        let f8: Vec<u8> = [0.6f64, 0.8].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(parse_npy(&npy("<f8", "(2,)", &f8)).unwrap(), vec![0.6, 0.8]);
        let f2: Vec<u8> = [0.5f32, 1.0].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        assert_eq!(parse_npy(&npy("<f2", "(2,)", &f2)).unwrap(), vec![0.5, 1.0]);
    }

    #[test]
    fn npy_files_that_are_not_one_float_vector_are_refused() {
        let f4: Vec<u8> = [0.6f32, 0.8, 0.0, 1.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(parse_npy(&npy("<f4", "(2, 2)", &f4)).is_err());
        assert!(parse_npy(&npy("<i4", "(4,)", &f4)).is_err());
        assert!(parse_npy(&npy("<f4", "(5,)", &f4)).is_err());
        assert!(parse_npy(&npy("<f4", "(4,)", &f4)[..20]).is_err());
        // Bytes past the values the header promises.
        assert!(parse_npy(&npy("<f4", "(4,)", &[&f4[..], &[0, 0, 0]].concat())).is_err());
    }

    #[test]
    fn json_vectors_and_single_embed_outputs_are_read() {
        assert_eq!(parse_json(b"[0.6, 0.8]").unwrap(), vec![0.6, 0.8]);
        let embed = br#"{"model": "m", "dim": 2, "images": {}, "texts": {"a cat": [0.6, 0.8]}}"#;
        assert_eq!(parse_json(embed).unwrap(), vec![0.6, 0.8]);
        let two = br#"{"model": "m", "dim": 2, "images": {"a.jpg": [1, 0]}, "texts": {"a cat": [0.6, 0.8]}}"#;
        assert!(parse_json(two).is_err());
        assert!(parse_json(br#"[0.6, "x"]"#).is_err());
    }
}
