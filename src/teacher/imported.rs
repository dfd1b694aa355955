//! Teacher outputs made elsewhere (`softlabel import`): a teacher that is not ONNX (a fastText or
//! scikit-learn model, a hosted API, a JAX model) ran in the user's own code, and its outputs are joined
//! to the source data by id and stored like any teacher pass.
//!
//! The outputs file is untrusted: JSONL lines are bounded in length, every row is checked (an id once,
//! the same number of values as the first row, finite values, probabilities in [0, 1] summing to 1 and
//! log-probabilities whose exponentials do), and memory is bounded by what the file holds. Parquet, NPY
//! and CSV outputs are read by the data readers, with their rules.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use super::OutputKind;
use crate::data::{Batch, DataSpec};
use crate::error::{Error, Result};
use crate::util::{clip, open_regular, Links};

/// The longest JSONL line read (bytes).
pub const MAX_LINE: u64 = 64 << 20;
/// How far a row of probabilities may sum from 1 (or the exponentials of log-probabilities).
pub const SUM_TOLERANCE: f64 = 1e-3;

/// Where imported outputs are and what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSource {
    /// The outputs file: JSONL (`.jsonl`, `.ndjson`, `.json`), Parquet, `.npy`/`.npz` or CSV.
    pub outputs: PathBuf,
    /// What the values are; `Auto` takes it from the JSONL key (`logits`, `probs`, `log_probs`) or
    /// detects it from the first rows.
    pub kind: OutputKind,
    /// The column (Parquet, CSV columns as a comma list) or JSONL key holding the values.
    pub column: Option<String>,
    /// The teacher's name, recorded in the manifest.
    pub teacher_name: Option<String>,
    /// An identifier of the exact teacher (a version, a model hash, an API model id), recorded.
    pub teacher_id: Option<String>,
    /// Classes (K) of top-k log-probabilities, when no class names give it.
    pub num_classes: Option<usize>,
    /// Class names: top-k log-probabilities keyed by name (a token, a label) map to their positions.
    pub class_names: Option<Vec<String>>,
}

/// Outputs loaded and checked, by id.
#[derive(Debug)]
pub struct Imported {
    path: PathBuf,
    kind: OutputKind,
    format: &'static str,
    column: String,
    index: HashMap<u64, usize>,
    /// Logits (probabilities as log p), row-major.
    logits: Vec<f32>,
    k: usize,
    /// Entries per row of top-k log-probabilities.
    top_k: Option<usize>,
    sha256: String,
}

/// JSONL keys that hold the values, and what they say the values are.
const KEYS: [(&str, OutputKind); 5] = [
    ("logits", OutputKind::Logits),
    ("probs", OutputKind::Probs),
    ("log_probs", OutputKind::LogProbs),
    ("logprobs", OutputKind::LogProbs),
    ("values", OutputKind::Auto),
];

impl Imported {
    /// Reads and checks the outputs of `src`.
    pub fn load(src: &ImportSource) -> Result<Self> {
        let path = &src.outputs;
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let jsonl = matches!(ext.as_deref(), Some("jsonl" | "ndjson" | "json"));
        let topk = src.kind == OutputKind::TopkLogProbs;
        if topk && !jsonl {
            return Err(Error::data(
                path,
                "top-k log-probabilities are read from JSONL (`{\"id\": 7, \"top_logprobs\": {\"3\": -0.1, ...}}` a line)",
            ));
        }
        let mut top_k = None;
        let (format, column, ids, values, k, key_kind, rows_at) = if topk {
            let (loaded, top) = read_topk_jsonl(src)?;
            top_k = Some(top);
            loaded
        } else if jsonl {
            read_jsonl(src)?
        } else {
            read_table(src)?
        };
        let kind = match (src.kind, key_kind) {
            (OutputKind::Auto, OutputKind::Auto) => OutputKind::detect(&values, k),
            (OutputKind::Auto, from_key) => from_key,
            (given, _) => given,
        };
        let mut logits = values;
        let mut index = HashMap::with_capacity(ids.len());
        for (r, id) in ids.iter().enumerate() {
            if let Some(first) = index.insert(*id, r) {
                return Err(Error::data(
                    path,
                    format!("{}: duplicate id {id} (first at {})", rows_at(r), rows_at(first)),
                ));
            }
            if !topk {
                check_row(&logits[r * k..(r + 1) * k], kind)
                    .map_err(|e| Error::data(path, format!("{}, id {id}: {e}", rows_at(r))))?;
            }
        }
        if ids.is_empty() {
            return Err(Error::data(path, "holds no outputs"));
        }
        if k > crate::store::MAX_CLASSES {
            return Err(Error::data(
                path,
                format!(
                    "rows have {k} values; a soft-label dataset holds at most {} classes",
                    crate::store::MAX_CLASSES
                ),
            ));
        }
        kind.to_logits(&mut logits);
        let sha256 = crate::util::sha256_file(path)?;
        Ok(Imported { path: path.clone(), kind, format, column, index, logits, k, top_k, sha256 })
    }

    /// Entries per row, for top-k log-probabilities.
    pub fn top_k(&self) -> Option<usize> {
        self.top_k
    }

    /// Classes per row.
    pub fn num_classes(&self) -> usize {
        self.k
    }

    /// What the values were (logits, probabilities or log-probabilities).
    pub fn kind(&self) -> OutputKind {
        self.kind
    }

    /// The outputs file's format: jsonl, parquet, npy, npz or csv.
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// The column or JSONL key the values came from.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Rows of outputs.
    pub fn rows(&self) -> usize {
        self.index.len()
    }

    /// sha256 of the outputs file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The outputs file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The logits of `batch`'s rows, by id; an id without outputs is an error naming both files.
    pub fn lookup(&self, batch: &Batch) -> Result<(Vec<f32>, usize)> {
        let mut out = Vec::with_capacity(batch.len() * self.k);
        for (i, id) in batch.ids.iter().enumerate() {
            let r = *self.index.get(id).ok_or_else(|| {
                Error::data(
                    &self.path,
                    format!(
                        "holds no output for id {id} (row {} of {}); import needs an output for every row of the data",
                        batch.first_row + i as u64,
                        batch.file.display()
                    ),
                )
            })?;
            out.extend_from_slice(&self.logits[r * self.k..(r + 1) * self.k]);
        }
        Ok((out, self.k))
    }
}

/// Checks one row's values for their kind.
fn check_row(v: &[f32], kind: OutputKind) -> std::result::Result<(), String> {
    let allowed = |x: f32| x.is_finite() || (kind == OutputKind::LogProbs && x == f32::NEG_INFINITY);
    if let Some(j) = v.iter().position(|x| !allowed(*x)) {
        return Err(format!("value {j} is {}", v[j]));
    }
    match kind {
        OutputKind::Probs => {
            if let Some(j) = v.iter().position(|x| !(0.0..=1.0 + 1e-6).contains(x)) {
                return Err(format!("probability {j} is {}, outside [0, 1]", v[j]));
            }
            let sum: f64 = v.iter().map(|&x| f64::from(x)).sum();
            if (sum - 1.0).abs() > SUM_TOLERANCE {
                return Err(format!("probabilities sum to {sum}, not 1 (are they logits? pass --kind logits)"));
            }
        }
        OutputKind::LogProbs => {
            if let Some(j) = v.iter().position(|x| *x > 1e-6) {
                return Err(format!("log-probability {j} is {} > 0", v[j]));
            }
            let sum: f64 = v.iter().map(|&x| f64::from(x).exp()).sum();
            if (sum - 1.0).abs() > SUM_TOLERANCE {
                return Err(format!(
                    "the exponentials of the log-probabilities sum to {sum}, not 1 (top-k log-probabilities \
                     over a larger vocabulary are not dense outputs)"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Top-k log-probabilities, JSONL: `{"id": 7, "top_logprobs": {"3": -0.05, "8": -3.2}}` a line, or the
/// list OpenAI-style APIs return (`[{"token": "3", "logprob": -0.05}, ...]`; `class` or `index` for
/// `token`). A class is its index, or a name of `class_names`. Every row has the same number k of
/// distinct classes, log-probabilities <= 0 whose exponentials sum to at most 1.
///
/// Each row becomes a full row of K logits that softmaxes to the exact distribution at T = 1: the given
/// log-probabilities, and the remaining mass 1 - sum exp spread evenly over the other classes (its log
/// in each). The top-k form then stores exactly the given classes and log-probabilities, and the
/// normaliser logsumexp = log 1 = 0; the spread is never stored. The mean of the other classes can
/// exceed the k-th probability only within the values' rounding (then it is held just below it), unless
/// the values are not the top k of a distribution normalised over K classes: such a row is refused.
fn read_topk_jsonl(src: &ImportSource) -> Result<(Loaded, usize)> {
    let path = &src.outputs;
    let k_classes = match (&src.class_names, src.num_classes) {
        (Some(names), Some(n)) if names.len() != n => {
            return Err(Error::Config(format!("--class-names lists {} names, --num-classes says {n}", names.len())))
        }
        (Some(names), _) => names.len(),
        (None, Some(n)) => n,
        (None, None) => {
            return Err(Error::Config(
                "--kind topk-log-probs needs the number of classes the log-probabilities are normalised over: \
                 --num-classes K or --class-names"
                    .into(),
            ))
        }
    };
    if k_classes == 0 || k_classes > crate::store::MAX_CLASSES {
        return Err(Error::Config(format!("--num-classes must be in 1..={}", crate::store::MAX_CLASSES)));
    }
    let by_name: HashMap<&str, usize> =
        src.class_names.iter().flatten().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let key_name = src.column.clone().unwrap_or_else(|| "top_logprobs".into());
    let (mut ids, mut values, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    let mut top: Option<usize> = None;
    objects(path, |n, id, obj| {
        let at = |what: String| Error::data(path, format!("line {n}: {what}"));
        let entries: Vec<(String, f64)> = match obj.get(&key_name) {
            Some(serde_json::Value::Object(m)) => m
                .iter()
                .map(|(c, v)| {
                    v.as_f64()
                        .map(|x| (c.clone(), x))
                        .ok_or_else(|| at(format!("'{key_name}': the value of '{}' is not a number", clip(c, 40))))
                })
                .collect::<Result<_>>()?,
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|e| {
                    let class = ["token", "class", "index"].iter().find_map(|k| e.get(*k));
                    let class = match class {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(v) if v.is_u64() => v.to_string(),
                        _ => return Err(at(format!("'{key_name}': an entry has no token, class or index"))),
                    };
                    let lp = e.get("logprob").and_then(|v| v.as_f64()).ok_or_else(|| {
                        at(format!("'{key_name}': the entry for '{}' has no numeric logprob", clip(&class, 40)))
                    })?;
                    Ok((class, lp))
                })
                .collect::<Result<_>>()?,
            _ => return Err(at(format!("no '{key_name}' object or list (--outputs-column names another key)"))),
        };
        let want = *top.get_or_insert(entries.len());
        if entries.len() != want || want == 0 {
            return Err(at(format!("'{key_name}' has {} entries, the first row has {want}", entries.len())));
        }
        if want > k_classes {
            return Err(at(format!("{want} log-probabilities for {k_classes} classes")));
        }
        let mut row = vec![f32::NAN; k_classes];
        let (mut mass, mut lowest) = (0f64, f64::INFINITY);
        for (class, lp) in &entries {
            let c = match class.parse::<usize>() {
                Ok(c) if by_name.is_empty() => c,
                _ => *by_name.get(class.as_str()).ok_or_else(|| {
                    at(format!(
                        "class '{}' is {}",
                        clip(class, 40),
                        if by_name.is_empty() {
                            "not an index (give --class-names to map names)"
                        } else {
                            "not in --class-names"
                        }
                    ))
                })?,
            };
            if c >= k_classes {
                return Err(at(format!("class {c} is outside [0, {k_classes})")));
            }
            if !row[c].is_nan() {
                return Err(at(format!("class '{}' is given twice", clip(class, 40))));
            }
            if !(lp.is_finite() || *lp == f64::NEG_INFINITY) || *lp > 1e-6 {
                return Err(at(format!("log-probability {lp} of class '{}' is not <= 0", clip(class, 40))));
            }
            row[c] = lp.min(0.0) as f32;
            mass += lp.exp();
            lowest = lowest.min(*lp);
        }
        if mass > 1.0 + SUM_TOLERANCE {
            return Err(at(format!("the exponentials of the log-probabilities sum to {mass}, more than 1")));
        }
        let others = k_classes - want;
        if others > 0 {
            // The residual is known to the precision of the given values (float32 log-probabilities sum to 1
            // within ~1e-7): where it exceeds the k-th probability by less than the tolerance, the spread
            // is held just below the k-th log-probability so the stored top k are the given classes.
            let mean = (1.0 - mass).max(0.0) / others as f64;
            if mean - lowest.exp() > SUM_TOLERANCE {
                return Err(at(format!(
                    "the other {others} classes' mean probability ({mean:.3e}) is above the smallest of the top \
                     {want} ({:.3e}): these are not the top {want} of a distribution over {k_classes} classes",
                    lowest.exp()
                )));
            }
            let below = (lowest as f32).next_down();
            let fill = (mean.ln() as f32).min(below);
            row.iter_mut().filter(|v| v.is_nan()).for_each(|v| *v = fill);
        }
        values.extend_from_slice(&row);
        ids.push(id);
        lines.push(n);
        Ok(())
    })?;
    let loaded: Loaded = (
        "jsonl",
        key_name,
        ids,
        values,
        k_classes,
        OutputKind::TopkLogProbs,
        Box::new(move |r| format!("line {}", lines[r])),
    );
    Ok((loaded, top.unwrap_or(0)))
}

/// Calls `f` with each JSONL line's number, id and object: lines bounded in length, blank lines skipped,
/// every line a JSON object with an integer `id` >= 0 (else an error naming the line).
fn objects(
    path: &Path,
    mut f: impl FnMut(usize, u64, &serde_json::Map<String, serde_json::Value>) -> Result<()>,
) -> Result<()> {
    let (file, _) = open_regular(path, Links::Follow)?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let got = (&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut line).map_err(|e| Error::io(path, e))?;
        if got == 0 {
            return Ok(());
        }
        n += 1;
        if got as u64 > MAX_LINE {
            return Err(Error::data(path, format!("line {n} is longer than {} MiB", MAX_LINE >> 20)));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = |what: String| Error::data(path, format!("line {n}: {what}"));
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&line).map_err(|e| at(format!("not a JSON object ({e})")))?;
        let id = match obj.get("id") {
            Some(v) => {
                v.as_u64().ok_or_else(|| at(format!("id {} is not an integer >= 0", clip(&v.to_string(), 40))))?
            }
            None => return Err(at("no 'id'".into())),
        };
        f(n, id, &obj)?;
    }
}

type Loaded = (&'static str, String, Vec<u64>, Vec<f32>, usize, OutputKind, Box<dyn Fn(usize) -> String>);

/// JSONL: one object per line, `{"id": 7, "probs": [0.1, 0.9]}` (or `logits`, `log_probs`, `values`).
fn read_jsonl(src: &ImportSource) -> Result<Loaded> {
    let path = &src.outputs;
    let (mut ids, mut values, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    let (mut k, mut key): (Option<usize>, Option<(String, OutputKind)>) = (None, None);
    objects(path, |n, id, obj| {
        let at = |what: String| Error::data(path, format!("line {n}: {what}"));
        if key.is_none() {
            key = Some(match &src.column {
                Some(c) => (c.clone(), KEYS.iter().find(|(n, _)| n == c).map_or(OutputKind::Auto, |(_, kd)| *kd)),
                None => {
                    let found: Vec<_> = KEYS.iter().filter(|(n, _)| obj.contains_key(*n)).collect();
                    match found.as_slice() {
                        [(name, kd)] => (name.to_string(), *kd),
                        [] => {
                            return Err(at(
                                "no values: expected one of the keys logits, probs, log_probs, values".into()
                            ))
                        }
                        _ => return Err(at("several value keys; choose one with --outputs-column KEY".into())),
                    }
                }
            });
        }
        let (name, _) = key.as_ref().ok_or_else(|| Error::Internal("no key".into()))?;
        let arr = obj.get(name).and_then(|v| v.as_array()).ok_or_else(|| at(format!("no '{name}' list")))?;
        let want = *k.get_or_insert(arr.len());
        if arr.len() != want {
            return Err(at(format!("'{name}' has {} values, the first row has {want}", arr.len())));
        }
        for (j, v) in arr.iter().enumerate() {
            let x = v
                .as_f64()
                .ok_or_else(|| at(format!("value {j} of '{name}' is {}, not a number", clip(&v.to_string(), 40))))?;
            values.push(x as f32);
        }
        ids.push(id);
        lines.push(n);
        Ok(())
    })?;
    let (column, kind) = key.unwrap_or(("values".into(), OutputKind::Auto));
    Ok(("jsonl", column, ids, values, k.unwrap_or(0), kind, Box::new(move |r| format!("line {}", lines[r]))))
}

/// Parquet, NPY/NPZ or CSV outputs through the data readers: the values are the input column (by
/// default `logits`, `probs`, `log_probs` or `values`, whichever the file has), ids from `id`.
fn read_table(src: &ImportSource) -> Result<Loaded> {
    let path = &src.outputs;
    let format = crate::data::Format::detect(path)?;
    let column = match (&src.column, format) {
        (Some(c), _) => c.clone(),
        (None, crate::data::Format::Parquet) => {
            let files = crate::data::parquet_files(path)?;
            let b = crate::data::open_parquet(&files[0], Links::Follow)?;
            let schema = b.schema();
            KEYS.iter()
                .map(|(n, _)| *n)
                .find(|n| schema.field_with_name(n).is_ok())
                .ok_or_else(|| {
                    Error::data(
                        path,
                        "no values column: expected one of logits, probs, log_probs, values (or --outputs-column NAME)",
                    )
                })?
                .to_string()
        }
        (None, _) => "input".to_string(),
    };
    let key_kind = KEYS.iter().find(|(n, _)| *n == column).map_or(OutputKind::Auto, |(_, kd)| *kd);
    let spec = DataSpec { label_column: None, ..DataSpec::new(column.clone()) };
    let source = crate::data::open(path, &spec)?;
    let (mut ids, mut values) = (Vec::new(), Vec::new());
    let mut k = None;
    for b in source.batches(4096) {
        let b = b?;
        let want = *k.get_or_insert(b.width);
        if b.width != want {
            return Err(Error::data(
                path,
                format!("row {}: {} values, earlier rows have {want}", b.first_row, b.width),
            ));
        }
        ids.extend_from_slice(&b.ids);
        values.extend(b.input_f32());
    }
    let name = match format {
        crate::data::Format::Parquet => "parquet",
        crate::data::Format::Npy => "npy",
        crate::data::Format::Npz => "npz",
        crate::data::Format::Csv => "csv",
        crate::data::Format::ImageFolder | crate::data::Format::ImageList => {
            return Err(Error::data(path, "lists images; teacher outputs are JSONL, Parquet, .npy/.npz or CSV"))
        }
    };
    Ok((name, column, ids, values, k.unwrap_or(0), key_kind, Box::new(|r| format!("row {r}"))))
}
