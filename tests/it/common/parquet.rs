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

/// [`write_foreign`] with more columns, named as `export` names them.
pub fn write_with_columns(file: &Path, rows: &[(String, Vec<f32>)], columns: Vec<(Field, arrow_array::ArrayRef)>) {
    let plain = file.with_extension("plain.parquet");
    write_foreign(&plain, rows);
    let batch =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&plain).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays = batch.columns().to_vec();
    for (field, array) in columns {
        fields.push(field);
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(file).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// [`write_foreign`] with a place per row (`gps_latitude`, `gps_longitude`).
pub fn write_with_places(file: &Path, rows: &[(String, Vec<f32>)], places: &[(f64, f64)]) {
    let (latitudes, longitudes): (Vec<f64>, Vec<f64>) = places.iter().copied().unzip();
    let columns: Vec<(Field, arrow_array::ArrayRef)> = vec![
        (Field::new("gps_latitude", DataType::Float64, true), Arc::new(arrow_array::Float64Array::from(latitudes))),
        (Field::new("gps_longitude", DataType::Float64, true), Arc::new(arrow_array::Float64Array::from(longitudes))),
    ];
    write_with_columns(file, rows, columns);
}
