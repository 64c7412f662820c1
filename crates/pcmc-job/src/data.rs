//! Data files: CSV with a header `time,<column…>`, each column a species
//! (with `[observation]`) or an observable (`[observables.NAME]`). An empty
//! cell, `NA` or `nan` is a value not observed.

use crate::error::Result;
use crate::error::input;
use pcmc_core::model::Network;
use pcmc_core::observation::Data;
use std::path::Path;

/// The columns a data file may have, and what they are, for messages.
#[derive(Debug, Clone)]
pub struct Columns {
    /// The allowed column names.
    pub names: Vec<String>,
    /// What a column is, e.g. "a species of the model".
    pub what: String,
}

impl Columns {
    /// Columns that are species of `net`.
    pub fn species(net: &Network) -> Self {
        Columns {
            names: net.species().to_vec(),
            what: "a species of the model".into(),
        }
    }
}

/// Whether a data cell is a value not observed: empty, `NA` or `nan` (any
/// case).
pub fn is_missing(field: &str) -> bool {
    field.is_empty() || field.eq_ignore_ascii_case("na") || field.eq_ignore_ascii_case("nan")
}

/// Reads and validates a data file against the columns a job allows.
///
/// # Errors
/// An input error naming the file, the line and the column.
pub fn read_data(path: &Path, columns: &Columns) -> Result<Data> {
    let meta = std::fs::metadata(path)
        .map_err(|e| input(path, format!("cannot read the data file: {e}")))?;
    if meta.is_dir() {
        return Err(input(path, "is a directory, not a data file"));
    }
    let bytes =
        std::fs::read(path).map_err(|e| input(path, format!("cannot read the data file: {e}")))?;
    parse_data(path, &bytes, columns)
}

/// Parses CSV bytes read from `path`.
///
/// # Errors
/// As [`read_data`].
pub fn parse_data(path: &Path, bytes: &[u8], columns: &Columns) -> Result<Data> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(input(
            path,
            "the data file is empty (expected a header `time,<column…>` and rows)",
        ));
    }
    let (cols, records) = table(path, bytes)?;
    let observed = cols[1..].to_vec();
    for (i, c) in observed.iter().enumerate() {
        if !columns.names.contains(c) {
            return Err(input(
                path,
                format!(
                    "line 1, column {}: {c:?} is not {} ({})",
                    i + 2,
                    columns.what,
                    columns.names.join(", ")
                ),
            ));
        }
    }
    let mut times = Vec::new();
    let mut rows = Vec::new();
    for (line, rec) in records {
        let mut vals = Vec::with_capacity(cols.len());
        for (c, field) in rec.iter().enumerate() {
            if c > 0 && is_missing(field) {
                vals.push(f64::NAN);
                continue;
            }
            if c == 0 && is_missing(field) {
                return Err(input(
                    path,
                    format!("line {line}, column \"time\": the time is missing"),
                ));
            }
            let v: f64 = field.parse().map_err(|_| {
                input(
                    path,
                    format!(
                        "line {line}, column {:?}: {field:?} is not a number",
                        cols[c]
                    ),
                )
            })?;
            if !v.is_finite() {
                return Err(input(
                    path,
                    format!(
                        "line {line}, column {:?}: {field:?} is not a finite number (write NA or leave the cell empty for a value not observed)",
                        cols[c]
                    ),
                ));
            }
            vals.push(v);
        }
        if let Some(prev) = times.last()
            && vals[0] <= *prev
        {
            return Err(input(
                path,
                format!(
                    "line {line}, column \"time\": {} is not after the previous time {prev}",
                    vals[0]
                ),
            ));
        }
        times.push(vals[0]);
        rows.push(vals[1..].to_vec());
    }
    if times.is_empty() {
        return Err(input(path, "no data rows after the header"));
    }
    Data::from_columns(times, &observed, rows).map_err(|e| input(path, e.to_string()))
}

/// Reads a covariate file: CSV `time,<covariate…>`, each value in force
/// from its time until the next row's.
///
/// # Errors
/// An input error naming the file, the line and the column.
pub fn read_covariates(path: &Path) -> Result<pcmc_core::covariate::Covariates> {
    let bytes = std::fs::read(path)
        .map_err(|e| input(path, format!("cannot read the covariate file: {e}")))?;
    parse_covariates(path, &bytes)
}

/// Parses covariate CSV bytes read from `path`.
///
/// # Errors
/// As [`read_covariates`].
pub fn parse_covariates(path: &Path, bytes: &[u8]) -> Result<pcmc_core::covariate::Covariates> {
    let (cols, records) = table(path, bytes)?;
    let (mut times, mut rows) = (Vec::new(), Vec::new());
    for (line, rec) in records {
        let mut vals = Vec::with_capacity(cols.len());
        for (c, field) in rec.iter().enumerate() {
            let v = field
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && (c == 0 || *v >= 0.0))
                .ok_or_else(|| {
                    input(
                        path,
                        format!(
                            "line {line}, column {:?}: {field:?} is not a finite number{}",
                            cols[c],
                            if c == 0 {
                                ""
                            } else {
                                " ≥ 0 (covariates cannot be missing)"
                            }
                        ),
                    )
                })?;
            vals.push(v);
        }
        times.push(vals[0]);
        rows.push(vals[1..].to_vec());
    }
    pcmc_core::covariate::Covariates::new(cols[1..].to_vec(), times, rows)
        .map_err(|e| input(path, e.to_string()))
}

/// A CSV table's records, each with its line.
type Records = Vec<(u64, csv::StringRecord)>;

/// The header (`time` then at least one column) and the records of a CSV
/// table.
fn table(path: &Path, bytes: &[u8]) -> Result<(Vec<String>, Records)> {
    let mut rdr = reader(bytes);
    let header = rdr
        .headers()
        .map_err(|e| input(path, format!("cannot read the header: {e}")))?
        .clone();
    let cols: Vec<String> = header.iter().map(str::to_string).collect();
    if cols.first().map(String::as_str) != Some("time") {
        return Err(input(
            path,
            format!(
                "line 1: the first column must be `time`, found {:?}",
                cols.first().cloned().unwrap_or_default()
            ),
        ));
    }
    if cols.len() < 2 {
        return Err(input(path, "line 1: no column after `time`"));
    }
    let mut records = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| line_at(bytes, p));
            input(path, format!("line {line}: {}", csv_reason(&e)))
        })?;
        let line = rec.position().map_or(0, |p| line_at(bytes, p));
        records.push((line, rec));
    }
    Ok((cols, records))
}

/// The CSV reader of data files: fields trimmed, `#` comments.
fn reader(bytes: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes)
}

/// The line of the data file at `path` that holds data row `row` (0 for
/// the first row after the header), for messages about a value.
pub fn line_of_row(path: &Path, row: usize) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut rdr = reader(&bytes);
    let rec = rdr.records().nth(row)?.ok()?;
    rec.position().map(|p| line_at(&bytes, p))
}

/// The line of the file (comment lines counted, which the CSV reader's own
/// count skips) where a record starts.
fn line_at(bytes: &[u8], p: &csv::Position) -> u64 {
    let mut at = (p.byte() as usize).min(bytes.len());
    let mut line = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    // The reader's position can be that of the comment or blank lines it
    // skipped before the record: step over them.
    while at < bytes.len() {
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| at + i);
        let text = String::from_utf8_lossy(&bytes[at..end]);
        let t = text.trim();
        if !(t.is_empty() || t.starts_with('#')) || end == bytes.len() {
            break;
        }
        at = end + 1;
        line += 1;
    }
    line
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "the line is not UTF-8 text".into(),
        _ => e.to_string(),
    }
}

/// Writes a dataset as CSV text.
pub fn format_data(names: &[String], times: &[f64], rows: &[Vec<f64>]) -> String {
    let mut out = String::from("time");
    for n in names {
        out.push(',');
        out.push_str(n);
    }
    out.push('\n');
    for (t, row) in times.iter().zip(rows) {
        out.push_str(&t.to_string());
        for v in row {
            out.push(',');
            if v.is_nan() {
                out.push_str("NA");
            } else {
                out.push_str(&v.to_string());
            }
        }
        out.push('\n');
    }
    out
}
