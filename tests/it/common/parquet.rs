//! Parquet files as other pipelines write them, for `imgsearch import`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, LargeStringBuilder};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};

/// clip-retrieval-style rows: `path` as a large string, `embedding` as a fixed-size list, not
/// normalised, no other column, no metadata.
pub fn write_foreign(file: &Path, rows: &[(String, Vec<f32>)]) {
    let dim = rows[0].1.len() as i32;
    let mut paths = LargeStringBuilder::new();
    let mut embeddings = FixedSizeListBuilder::new(Float32Builder::new(), dim);
    for (path, embedding) in rows {
        paths.append_value(path);
        embeddings.values().append_slice(embedding);
        embeddings.append(true);
    }
    let schema = Schema::new(vec![
        Field::new("path", DataType::LargeUtf8, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, true)), dim),
            false,
        ),
    ]);
    let batch =
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(paths.finish()), Arc::new(embeddings.finish())]).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(file).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}
