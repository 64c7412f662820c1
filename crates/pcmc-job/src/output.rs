//! Chain files: `chain.csv` (streamed as the run goes; the record of truth)
//! and `chain.parquet` (written in row groups and finalised at the end;
//! `pcmc report` rebuilds it from the CSV).

use crate::error::input;
use crate::error::{InputError, OutputError};
use std::path::PathBuf;

/// The result of writing or reading a chain file.
pub type Result<T, E = OutputError> = std::result::Result<T, E>;
use arrow::array::{ArrayRef, BooleanArray, Float64Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One kept iteration of one chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRow {
    /// Chain index.
    pub chain: u64,
    /// Iteration (counting burn-in).
    pub iteration: u64,
    /// Log-likelihood estimate of the current state.
    pub loglik: f64,
    /// Whether this iteration's proposal was accepted.
    pub accepted: bool,
    /// θ.
    pub theta: Vec<f64>,
}

/// The CSV header for parameters `names`.
pub fn header(names: &[String]) -> String {
    let mut h = String::from("chain,iteration,loglik,accepted");
    for n in names {
        h.push(',');
        h.push_str(n);
    }
    h
}

/// Formats a row as a CSV line. Floats use Rust's shortest round-trip
/// formatting, so the text parses back to the same bits.
pub fn format_row(r: &ChainRow) -> String {
    let mut s = format!(
        "{},{},{},{}",
        r.chain,
        r.iteration,
        r.loglik,
        u8::from(r.accepted)
    );
    for x in &r.theta {
        s.push(',');
        s.push_str(&x.to_string());
    }
    s
}

/// Streams rows to `chain.csv` and `chain.parquet`.
pub struct ChainWriter {
    csv: BufWriter<File>,
    /// `chain.csv`'s path, for messages.
    path: PathBuf,
    parquet: Option<ArrowWriter<File>>,
    schema: Arc<Schema>,
    pending: Vec<ChainRow>,
    last_flush: Instant,
}

fn schema(names: &[String]) -> Arc<Schema> {
    let mut fields = vec![
        Field::new("chain", DataType::UInt64, false),
        Field::new("iteration", DataType::UInt64, false),
        Field::new("loglik", DataType::Float64, false),
        Field::new("accepted", DataType::Boolean, false),
    ];
    fields.extend(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Float64, false)),
    );
    Arc::new(Schema::new(fields))
}

fn batch(schema: &Arc<Schema>, rows: &[ChainRow]) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.chain))),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.iteration),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.loglik),
        )),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.accepted).collect::<Vec<_>>(),
        )),
    ];
    let np = schema.fields().len() - 4;
    for p in 0..np {
        cols.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.theta[p]),
        )));
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Writes all rows to a Parquet file at `path`.
///
/// # Errors
/// I/O and encoding failures.
pub fn write_parquet(path: &Path, names: &[String], rows: &[ChainRow]) -> Result<()> {
    let schema = schema(names);
    let file = File::create(path).map_err(OutputError::io(path))?;
    let mut w = ArrowWriter::try_new(
        file,
        schema.clone(),
        Some(WriterProperties::builder().build()),
    )?;
    if !rows.is_empty() {
        w.write(&batch(&schema, rows)?)?;
    }
    w.close()?;
    Ok(())
}

impl ChainWriter {
    /// Creates (truncating) `dir/chain.csv` and, if `parquet`,
    /// `dir/chain.parquet`.
    ///
    /// # Errors
    /// If the files cannot be created.
    pub fn create(dir: &Path, names: &[String], parquet: bool) -> Result<Self> {
        let p = dir.join("chain.csv");
        let f = File::create(&p)
            .map_err(|e| input(&p, format!("cannot create the chain file: {e}")))?;
        let mut csv = BufWriter::new(f);
        writeln!(csv, "{}", header(names)).map_err(OutputError::io(&p))?;
        let schema = schema(names);
        let parquet = if parquet {
            let p = dir.join("chain.parquet");
            let f = File::create(&p)
                .map_err(|e| input(&p, format!("cannot create the chain file: {e}")))?;
            Some(ArrowWriter::try_new(
                f,
                schema.clone(),
                Some(WriterProperties::builder().build()),
            )?)
        } else {
            None
        };
        csv.flush().map_err(OutputError::io(&p))?;
        Ok(ChainWriter {
            csv,
            path: p,
            parquet,
            schema,
            pending: Vec::new(),
            last_flush: Instant::now(),
        })
    }

    /// Reopens `dir/chain.csv` (already cut back to `existing` rows) for
    /// appending, and rewrites `dir/chain.parquet` with `existing` as its first
    /// row group.
    ///
    /// # Errors
    /// If the files cannot be opened or written.
    pub fn append(
        dir: &Path,
        names: &[String],
        parquet: bool,
        existing: &[ChainRow],
    ) -> Result<Self> {
        let p = dir.join("chain.csv");
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(|e| input(&p, format!("cannot reopen the chain file: {e}")))?;
        let schema = schema(names);
        let csv_path = p;
        let parquet = if parquet {
            let p = dir.join("chain.parquet");
            let f = File::create(&p)
                .map_err(|e| input(&p, format!("cannot create the chain file: {e}")))?;
            let mut w =
                ArrowWriter::try_new(f, schema.clone(), Some(WriterProperties::builder().build()))?;
            if !existing.is_empty() {
                w.write(&batch(&schema, existing)?)?;
                w.flush()?;
            }
            Some(w)
        } else {
            None
        };
        Ok(ChainWriter {
            csv: BufWriter::new(f),
            path: csv_path,
            parquet,
            schema,
            pending: Vec::new(),
            last_flush: Instant::now(),
        })
    }

    /// Flushes `chain.csv` to disk (fsync), so a checkpoint written after this
    /// call never refers to rows that are not on disk.
    ///
    /// # Errors
    /// I/O failures.
    pub fn sync(&mut self) -> Result<()> {
        self.csv.flush().map_err(OutputError::io(&self.path))?;
        self.csv
            .get_ref()
            .sync_data()
            .map_err(OutputError::io(&self.path))?;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Appends a row. The CSV is flushed to the OS at least every two
    /// seconds; Parquet gets a row group every 10 000 rows.
    ///
    /// # Errors
    /// I/O failures.
    pub fn write(&mut self, row: &ChainRow) -> Result<()> {
        writeln!(self.csv, "{}", format_row(row)).map_err(OutputError::io(&self.path))?;
        if self.parquet.is_some() {
            self.pending.push(row.clone());
            if self.pending.len() >= 10_000 {
                self.flush_parquet()?;
            }
        }
        if self.last_flush.elapsed() > Duration::from_secs(2) {
            self.csv.flush().map_err(OutputError::io(&self.path))?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    fn flush_parquet(&mut self) -> Result<()> {
        if let Some(w) = self.parquet.as_mut()
            && !self.pending.is_empty()
        {
            w.write(&batch(&self.schema, &self.pending)?)?;
            w.flush()?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Flushes everything and finalises the Parquet file.
    ///
    /// # Errors
    /// I/O failures.
    pub fn finish(mut self) -> Result<()> {
        self.flush_parquet()?;
        self.csv.flush().map_err(OutputError::io(&self.path))?;
        self.csv
            .get_ref()
            .sync_all()
            .map_err(OutputError::io(&self.path))?;
        if let Some(w) = self.parquet.take() {
            w.close()?;
        }
        Ok(())
    }
}

/// Reads `chain.csv`, returning the parameter names and rows.
///
/// # Errors
/// An input error naming the file and line.
pub fn read_chain_csv(path: &Path) -> Result<(Vec<String>, Vec<ChainRow>), InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input(path, format!("cannot read the chain: {e}")))?;
    let mut lines = text.lines();
    let head = lines
        .next()
        .ok_or_else(|| input(path, "empty chain file"))?;
    let cols: Vec<&str> = head.split(',').collect();
    if cols.len() < 5 || cols[..4] != ["chain", "iteration", "loglik", "accepted"] {
        return Err(input(path, "line 1: not a pcmc chain header"));
    }
    let names: Vec<String> = cols[4..].iter().map(|s| s.to_string()).collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        // A crash may leave a partial last line: stop there.
        if f.len() != cols.len() {
            break;
        }
        let bad = || input(path, format!("line {}: malformed row", i + 2));
        let row = ChainRow {
            chain: f[0].parse().map_err(|_| bad())?,
            iteration: f[1].parse().map_err(|_| bad())?,
            loglik: f[2].parse().map_err(|_| bad())?,
            accepted: match f[3] {
                "1" => true,
                "0" => false,
                _ => return Err(bad()),
            },
            theta: f[4..]
                .iter()
                .map(|v| v.parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?,
        };
        rows.push(row);
    }
    Ok((names, rows))
}

/// Reads `chain.parquet` back into rows.
///
/// # Errors
/// I/O and decoding failures.
pub fn read_chain_parquet(path: &Path) -> Result<Vec<ChainRow>> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, UInt64Type};
    let f = File::open(path).map_err(OutputError::io(path))?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)?.build()?;
    let mut rows = Vec::new();
    for b in reader {
        let b = b?;
        let chain = b.column(0).as_primitive::<UInt64Type>();
        let it = b.column(1).as_primitive::<UInt64Type>();
        let ll = b.column(2).as_primitive::<Float64Type>();
        let acc = b.column(3).as_boolean();
        for i in 0..b.num_rows() {
            rows.push(ChainRow {
                chain: chain.value(i),
                iteration: it.value(i),
                loglik: ll.value(i),
                accepted: acc.value(i),
                theta: (4..b.num_columns())
                    .map(|c| b.column(c).as_primitive::<Float64Type>().value(i))
                    .collect(),
            });
        }
    }
    Ok(rows)
}
