//! Tabular input files (CSV or JSON Lines) read into columns.
//!
//! `train` and `drift` take a user's own file, so nothing here knows our generator's column
//! names: a [`Table`] is just named columns of [`Cell`]s, and the caller decides what each
//! column means.

use std::path::Path;

use thiserror::Error;

/// One value of one row, as the file gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Absent key, JSON `null`, or an empty CSV field.
    Missing,
    /// A JSON number.
    Num(f64),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON string, or any non-empty CSV field (CSV has no types; see [`Cell::as_f64`]).
    Text(String),
}

impl Cell {
    /// The value as a number: numbers as they are, booleans as 0/1, text if it parses.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Num(v) => Some(*v),
            Cell::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Cell::Text(s) => parse_number(s),
            Cell::Missing => None,
        }
    }

    /// The value as a category label (numbers by their shortest decimal form).
    pub fn as_category(&self) -> Option<String> {
        match self {
            Cell::Text(s) => Some(s.clone()),
            Cell::Num(v) => Some(format_category_number(*v)),
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Missing => None,
        }
    }

    /// True for [`Cell::Missing`].
    pub fn is_missing(&self) -> bool {
        matches!(self, Cell::Missing)
    }
}

/// Parses a CSV/JSON text as a number, accepting `true`/`false` as 1/0; NaN/inf are refused.
pub fn parse_number(s: &str) -> Option<f64> {
    match s.trim() {
        "true" | "TRUE" | "True" => Some(1.0),
        "false" | "FALSE" | "False" => Some(0.0),
        t => t.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// The label a number gets when it is used as a category, the same in training and scoring.
pub fn format_category_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A named column of cells.
#[derive(Debug, Clone)]
pub struct Column {
    /// Column name as in the file header or JSON key.
    pub name: String,
    /// One cell per row.
    pub cells: Vec<Cell>,
}

/// Columns read from one file, all of the same length.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Columns in the order first seen in the file.
    pub columns: Vec<Column>,
    /// Number of data rows.
    pub rows: usize,
}

/// Errors reading a data file.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File path as given.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A line or record is malformed.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// File path as given.
        path: String,
        /// 1-based line (JSONL) or record (CSV) number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file has no data rows.
    #[error("{0}: no data rows")]
    Empty(String),
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// Picks the format from the file extension, or by sniffing the first byte.
    pub fn detect(path: &Path, bytes: &[u8]) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Format::Csv,
            Some("jsonl" | "ndjson" | "json") => Format::JsonLines,
            _ => {
                if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
                    Format::JsonLines
                } else {
                    Format::Csv
                }
            }
        }
    }
}

impl Table {
    /// Reads a CSV or JSONL file. Returns the table and the raw bytes (for hashing).
    pub fn read_file(path: &Path) -> Result<(Table, Vec<u8>), DatasetError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Io { path: shown.clone(), source })?;
        let table = Table::parse(&bytes, Format::detect(path, &bytes), &shown)?;
        Ok((table, bytes))
    }

    /// Parses bytes in the given format; `name` is used in error messages.
    pub fn parse(bytes: &[u8], format: Format, name: &str) -> Result<Table, DatasetError> {
        let table = match format {
            Format::Csv => parse_csv(bytes, name)?,
            Format::JsonLines => parse_jsonl(bytes, name)?,
        };
        if table.rows == 0 {
            return Err(DatasetError::Empty(name.to_string()));
        }
        Ok(table)
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn column_index_or_insert(&mut self, name: &str) -> usize {
        if let Some(i) = self.columns.iter().position(|c| c.name == name) {
            return i;
        }
        self.columns.push(Column { name: name.to_string(), cells: vec![Cell::Missing; self.rows] });
        self.columns.len() - 1
    }
}

fn parse_csv(bytes: &[u8], name: &str) -> Result<Table, DatasetError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| DatasetError::Malformed { path: name.into(), line: 1, reason: e.to_string() })?
        .clone();
    let mut table = Table {
        columns: headers.iter().map(|h| Column { name: h.trim().to_string(), cells: Vec::new() }).collect(),
        rows: 0,
    };
    let mut seen = std::collections::BTreeSet::new();
    for c in &table.columns {
        if !seen.insert(c.name.clone()) {
            return Err(DatasetError::Malformed { path: name.into(), line: 1, reason: format!("duplicate column `{}`", c.name) });
        }
    }
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| DatasetError::Malformed { path: name.into(), line: i + 2, reason: e.to_string() })?;
        for (col, field) in table.columns.iter_mut().zip(record.iter()) {
            col.cells.push(if field.is_empty() { Cell::Missing } else { Cell::Text(field.to_string()) });
        }
        table.rows += 1;
    }
    Ok(table)
}

fn parse_jsonl(bytes: &[u8], name: &str) -> Result<Table, DatasetError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DatasetError::Malformed { path: name.into(), line: 0, reason: format!("not UTF-8: {e}") })?;
    let mut table = Table::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |reason: String| DatasetError::Malformed { path: name.into(), line: i + 1, reason };
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| malformed(e.to_string()))?;
        let serde_json::Value::Object(map) = value else {
            return Err(malformed("expected a JSON object".into()));
        };
        for col in &mut table.columns {
            col.cells.push(Cell::Missing);
        }
        table.rows += 1;
        for (key, v) in map {
            let cell = match v {
                serde_json::Value::Null => Cell::Missing,
                serde_json::Value::Bool(b) => Cell::Bool(b),
                serde_json::Value::Number(n) => Cell::Num(n.as_f64().unwrap_or(f64::NAN)),
                serde_json::Value::String(s) => Cell::Text(s),
                _ => return Err(malformed(format!("field `{key}`: nested arrays and objects are not supported"))),
            };
            let idx = table.column_index_or_insert(&key);
            *table.columns[idx].cells.last_mut().expect("row pushed above") = cell;
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_columns_are_the_union_of_keys_with_missing_filled() {
        let t = Table::parse(b"{\"a\":1,\"b\":\"x\"}\n\n{\"c\":true,\"a\":null}\n", Format::JsonLines, "t").unwrap();
        assert_eq!(t.rows, 2);
        assert_eq!(t.column("a").unwrap().cells, vec![Cell::Num(1.0), Cell::Missing]);
        assert_eq!(t.column("b").unwrap().cells, vec![Cell::Text("x".into()), Cell::Missing]);
        assert_eq!(t.column("c").unwrap().cells, vec![Cell::Missing, Cell::Bool(true)]);
    }

    #[test]
    fn csv_keeps_text_and_marks_empty_fields_missing() {
        let t = Table::parse(b"zip,amount\n02139,1.5\n,2\n", Format::Csv, "t").unwrap();
        assert_eq!(t.column("zip").unwrap().cells[0].as_category().as_deref(), Some("02139"));
        assert!(t.column("zip").unwrap().cells[1].is_missing());
        assert_eq!(t.column("amount").unwrap().cells[1].as_f64(), Some(2.0));
    }

    #[test]
    fn malformed_lines_name_their_line_number() {
        let err = Table::parse(b"{\"a\":1}\n{oops\n", Format::JsonLines, "f.jsonl").unwrap_err();
        assert!(err.to_string().starts_with("f.jsonl:2:"), "{err}");
        let err = Table::parse(b"{\"a\":[1]}\n", Format::JsonLines, "f.jsonl").unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
        assert!(matches!(Table::parse(b"a,b\n", Format::Csv, "e").unwrap_err(), DatasetError::Empty(_)));
    }

    #[test]
    fn numbers_used_as_categories_read_the_same_from_csv_and_json() {
        assert_eq!(Cell::Num(3.0).as_category().unwrap(), "3");
        assert_eq!(Cell::Num(3.5).as_category().unwrap(), "3.5");
        assert_eq!(parse_number("nan"), None);
        assert_eq!(parse_number("true"), Some(1.0));
    }
}
