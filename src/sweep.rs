//! `softlabel sweep`: many students trained on one soft-label dataset, the loop the teacher pass pays
//! for. A grid (or list) of training settings over shared base settings; each run trains into its own
//! folder named by its settings, through the same [`crate::train::run`] as `softlabel train`: a
//! finished run is reused, a killed one continues from its last epoch's checkpoint, so rerunning a
//! killed sweep finishes it. Runs go in parallel with the cores split between them. The results are
//! ranked by the validation metric (rows held out of the labels by id, the same rows for every run);
//! only the chosen student is measured on test data, since choosing by a test metric overstates it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::config::{Origin, TrainConfig, TrainSettings};
use crate::error::{Error, Result};
use crate::eval::EvalReport;
use crate::progress::{NoProgress, Progress};
use crate::store::SoftLabels;
use crate::train::{best_epoch, Resume, TrainJob, ValSet};

/// The validation share held out when neither the base settings nor `--val` say otherwise.
pub const DEFAULT_VAL_FRACTION: f64 = 0.1;
/// The most runs one sweep expands to (a grid multiplies fast; each run is a trained student).
pub const MAX_RUNS: usize = 10_000;

/// Settings a sweep varies and shares, as TOML values over [`TrainConfig`]'s keys.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Settings every run shares.
    #[serde(default)]
    pub base: toml::Table,
    /// The grid: each key with the values it takes; every combination is a run.
    #[serde(default)]
    pub grid: toml::Table,
    /// Runs listed one by one (each a table of settings over `base`); the grid applies to each.
    #[serde(default, rename = "run")]
    pub runs: Vec<toml::Table>,
    /// Runs trained at the same time (0: as many as the cores allow).
    #[serde(default)]
    pub parallel: usize,
}

/// One run of a sweep: its folder name, what it sets, and its validated settings.
#[derive(Debug, Clone)]
pub struct SweepRun {
    /// The run's folder name inside the sweep folder, from its settings (`alpha=0.5_hidden=64`).
    pub name: String,
    /// The settings this run sets over the base, as written.
    pub sets: Vec<(String, String)>,
    /// Its validated settings.
    pub settings: TrainSettings,
}

/// The largest sweep file read.
pub const MAX_SWEEP_BYTES: u64 = 1 << 20;

impl SweepSpec {
    /// Reads a sweep file (`[base]`, `[grid]`, `[[run]]`, `parallel`).
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::util::read_text_bounded(path, crate::util::Links::Follow, MAX_SWEEP_BYTES, "a sweep file")?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {}", path.display(), e.to_string().trim_end())))
    }

    /// Adds `--set KEY=V1,V2,...`: one value sets the base, several make a grid axis. Values are TOML
    /// (`0.5`, `[64,32]`, `"sgd"`; a bare word is a string); commas inside brackets stay in the value.
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let Some((key, values)) = assignment.split_once('=') else {
            return Err(Error::Config(format!("--set {assignment:?}: expected KEY=VALUE[,VALUE...]")));
        };
        let key = key.trim().to_string();
        let values = split_top_level(values).into_iter().map(|v| parse_value(&v)).collect::<Vec<_>>();
        match values.as_slice() {
            [] => return Err(Error::Config(format!("--set {key}= has no value"))),
            [one] => {
                self.base.insert(key, one.clone());
            }
            _ => {
                self.grid.insert(key, toml::Value::Array(values));
            }
        }
        Ok(())
    }

    /// Every run: the listed runs (or the base alone) times the grid, each validated. `default_val`:
    /// hold out [`DEFAULT_VAL_FRACTION`] when the base sets no `val_fraction`.
    pub fn expand(&self, default_val: bool) -> Result<Vec<SweepRun>> {
        let defaults = toml::Value::try_from(TrainConfig::default()).map_err(|e| Error::Internal(e.to_string()))?;
        let defaults = defaults.as_table().cloned().unwrap_or_default();
        let check_key = |key: &str, where_: &str| -> Result<()> {
            if key == "threads" {
                return Err(Error::Config(format!(
                    "{where_} sets threads: a sweep splits the cores between its runs itself (--parallel)"
                )));
            }
            if !defaults.contains_key(key) && !UNSET_BY_DEFAULT.contains(&key) {
                return Err(Error::Config(format!(
                    "{where_}: unknown setting `{key}` (the keys of `softlabel train`)"
                )));
            }
            Ok(())
        };
        let mut base = self.base.clone();
        for key in base.keys() {
            check_key(key, "[base]")?;
        }
        if default_val && !base.contains_key("val_fraction") {
            base.insert("val_fraction".into(), toml::Value::Float(DEFAULT_VAL_FRACTION));
        }
        let mut axes: Vec<(String, Vec<toml::Value>)> = Vec::new();
        for (key, values) in &self.grid {
            check_key(key, "[grid]")?;
            let values = match values {
                toml::Value::Array(v) if !v.is_empty() => v.clone(),
                _ => return Err(Error::Config(format!("[grid] {key} must be a non-empty list of values"))),
            };
            axes.push((key.clone(), values));
        }
        let listed = if self.runs.is_empty() { vec![toml::Table::new()] } else { self.runs.clone() };
        let combos = axes.iter().try_fold(listed.len(), |n, (_, v)| n.checked_mul(v.len()));
        match combos {
            Some(n) if n <= MAX_RUNS => {}
            _ => return Err(Error::Config(format!("the sweep expands to more than {MAX_RUNS} runs"))),
        }
        let mut runs = Vec::new();
        let mut names = BTreeSet::new();
        for (i, listed_run) in listed.iter().enumerate() {
            for key in listed_run.keys() {
                check_key(key, &format!("[[run]] {}", i + 1))?;
            }
            let mut combos: Vec<Vec<(String, toml::Value)>> = vec![listed_run.clone().into_iter().collect()];
            for (key, values) in &axes {
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push((key.clone(), v.clone()));
                            c
                        })
                    })
                    .collect();
            }
            for sets in combos {
                let mut table = base.clone();
                for (k, v) in &sets {
                    table.insert(k.clone(), coerce(&defaults, k, v.clone()));
                }
                let shown: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.clone(), show(v))).collect();
                let name = run_name(&shown);
                let config: TrainConfig = toml::Value::Table(table)
                    .try_into()
                    .map_err(|e| Error::Config(format!("sweep run {name}: {}", e.to_string().trim_end())))?;
                let settings = config.validate(&Origin::Flags).map_err(|e| match e {
                    Error::Config(m) => Error::Config(format!("sweep run {name}: {m}")),
                    e => e,
                })?;
                if !names.insert(name.clone()) {
                    return Err(Error::Config(format!("two sweep runs have the same settings ({name})")));
                }
                runs.push(SweepRun { name, sets: shown, settings });
            }
        }
        Ok(runs)
    }
}

/// The optional [`TrainConfig`] keys, absent from its serialised defaults; all but `early_stop` are floats.
const UNSET_BY_DEFAULT: [&str; 5] = ["lr", "temperature", "clip_norm", "val_fraction", "early_stop"];

/// A list setting given one value (`hidden = 64`) is a list of one.
fn coerce(defaults: &toml::Table, key: &str, v: toml::Value) -> toml::Value {
    match (defaults.get(key), v) {
        (Some(toml::Value::Array(_)), toml::Value::Array(a)) => toml::Value::Array(a),
        (Some(toml::Value::Array(_)), other) => toml::Value::Array(vec![other]),
        (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (None, toml::Value::Integer(i)) if UNSET_BY_DEFAULT.contains(&key) && key != "early_stop" => {
            toml::Value::Float(i as f64)
        }
        (_, other) => other,
    }
}

/// Splits at commas outside brackets and quotes.
fn split_top_level(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()
}

/// A TOML value, or a bare word as a string.
fn parse_value(s: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {s}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(s.to_string()))
}

/// A value as a run's name shows it: `64-32` for a list, the shortest float, a string as it is.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) if *f != 0.0 && (f.abs() >= 1e6 || f.abs() < 1e-3) => format!("{:e}", *f as f32),
        toml::Value::Float(f) if f64::from(*f as f32) == *f => (*f as f32).to_string(),
        toml::Value::Array(a) => a.iter().map(show).collect::<Vec<_>>().join("-"),
        other => other.to_string(),
    }
}

/// The folder name of a run: its settings as `key=value` joined by `_`, reduced to a safe alphabet.
fn run_name(sets: &[(String, String)]) -> String {
    if sets.is_empty() {
        return "base".into();
    }
    let raw = sets.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("_");
    let safe: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || ".=-_".contains(c) { c } else { '-' }).collect();
    if safe.len() <= 120 {
        return safe;
    }
    // Too long for a folder name: a prefix and the hash of the whole.
    format!("{}-{}", &safe[..100], &crate::util::sha256_hex(raw.as_bytes())[..16])
}

/// A sweep to run.
pub struct SweepJob<'a> {
    /// The soft labels every run learns from.
    pub labels: &'a SoftLabels,
    /// The runs.
    pub runs: &'a [SweepRun],
    /// The sweep folder; each run trains into `out/NAME`.
    pub out: &'a Path,
    /// Validation rows from other data (`--val`), instead of rows held out of the labels.
    pub val: Option<&'a ValSet>,
    /// For a label-only dataset: the source to join inputs from, and whether to ignore its fingerprint.
    pub join: Option<(&'a Path, bool)>,
    /// Runs at the same time (0: the cores, at most the runs).
    pub parallel: usize,
    /// Training threads in all (0: all cores), split between the parallel runs.
    pub threads: usize,
    /// Replace finished runs made otherwise.
    pub overwrite: bool,
}

/// One run's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Its folder name.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// The settings it sets over the base.
    pub sets: Vec<(String, String)>,
    /// `[input, hidden..., classes]`.
    pub dims: Vec<usize>,
    /// Trainable parameters.
    pub parameters: usize,
    /// Epochs trained (fewer than asked after an early stop).
    pub epochs: usize,
    /// The epoch whose weights were kept.
    pub kept_epoch: usize,
    /// Validation accuracy of the kept epoch (labelled validation rows).
    pub val_accuracy: Option<f64>,
    /// Validation agreement with the teacher of the kept epoch.
    pub val_agreement: Option<f64>,
    /// Validation KL(teacher || student) at T = 1 of the kept epoch.
    pub val_kl: Option<f64>,
    /// Training seconds (of the run that trained it, when reused).
    pub train_seconds: f64,
    /// Whether a finished run was reused.
    pub reused: bool,
    /// "ok", or why the run has no student ("diverged: ...").
    pub status: String,
}

impl RunResult {
    /// The ranking metric: accuracy, else agreement.
    pub fn score(&self) -> Option<f64> {
        self.val_accuracy.or(self.val_agreement)
    }
}

/// What a sweep reports (`sweep.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The labels folder.
    pub labels: String,
    /// What ranks the runs: "validation accuracy" or "validation agreement with the teacher".
    pub metric: String,
    /// The validation rows.
    pub validation: String,
    /// Every run, best first (runs without a result last).
    pub runs: Vec<RunResult>,
    /// The chosen run's name.
    pub chosen: Option<String>,
    /// The chosen student on the test data, when given.
    pub test: Option<EvalReport>,
    /// The test data.
    pub test_data: Option<String>,
}

/// Trains every run (reusing finished ones, continuing interrupted ones) and ranks them.
pub fn run(job: &SweepJob, progress: &dyn Progress) -> Result<SweepReport> {
    let n = job.runs.len();
    if n == 0 {
        return Err(Error::Config("the sweep has no runs".into()));
    }
    std::fs::create_dir_all(job.out).map_err(|e| Error::io(job.out, e))?;
    let _lock = crate::util::OutputLock::acquire(job.out)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = if job.threads == 0 { cores } else { job.threads };
    let parallel = if job.parallel == 0 { threads.min(n) } else { job.parallel.min(n) }.max(1);
    let per_run = (threads / parallel).max(1);
    tracing::info!(runs = n, parallel, threads_per_run = per_run, "sweep");
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<RunResult>>>> = Mutex::new((0..n).map(|_| None).collect());
    progress.begin("sweep", Some(n as u64));
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n || failed.load(Ordering::SeqCst) {
                    break;
                }
                let r = train_one(job, &job.runs[i], per_run);
                match &r {
                    Ok(res) => progress.message(&format!("{}: {}", res.name, summary(res))),
                    Err(_) => failed.store(true, Ordering::SeqCst),
                }
                progress.advance(1);
                if let Ok(mut all) = results.lock() {
                    all[i] = Some(r);
                }
            });
        }
    });
    progress.end();
    let mut runs = Vec::with_capacity(n);
    // A run left unstarted (None) follows a failed one, whose error is returned here.
    for r in results.into_inner().map_err(|_| Error::Internal("a sweep worker panicked".into()))?.into_iter().flatten()
    {
        runs.push(r?);
    }
    runs.sort_by(|a, b| match (a.score(), b.score()) {
        (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.parameters.cmp(&b.parameters)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.cmp(&b.name),
    });
    let metric = if runs.iter().any(|r| r.val_accuracy.is_some()) {
        "validation accuracy"
    } else {
        "validation agreement with the teacher"
    };
    let validation = match job.val {
        Some(v) => format!("--val ({})", v.identity),
        None => match job.runs[0].settings.holdout {
            Some(h) => format!("{:.0}% of the labels' ids held out (split seed {})", 100.0 * h.fraction, h.seed),
            None => "none".into(),
        },
    };
    Ok(SweepReport {
        labels: job.labels.dir().display().to_string(),
        metric: metric.into(),
        validation,
        chosen: runs.first().filter(|r| r.score().is_some()).map(|r| r.name.clone()),
        runs,
        test: None,
        test_data: None,
    })
}

fn summary(r: &RunResult) -> String {
    match r.score() {
        Some(s) => format!("{:.2}%{}", 100.0 * s, if r.reused { " (reused)" } else { "" }),
        None => r.status.clone(),
    }
}

/// Trains (or reuses) one run.
fn train_one(job: &SweepJob, run: &SweepRun, threads: usize) -> Result<RunResult> {
    let dir = job.out.join(&run.name);
    let train_job = TrainJob {
        labels: job.labels,
        settings: &run.settings,
        out: &dir,
        val: job.val,
        join: job.join,
        resume: Resume::IfMatching,
        threads,
        overwrite: job.overwrite,
    };
    let base = RunResult {
        name: run.name.clone(),
        dir: dir.clone(),
        sets: run.sets.clone(),
        dims: Vec::new(),
        parameters: 0,
        epochs: 0,
        kept_epoch: 0,
        val_accuracy: None,
        val_agreement: None,
        val_kl: None,
        train_seconds: 0.0,
        reused: false,
        status: "ok".into(),
    };
    let (trained, info) = match crate::train::run(&train_job, &NoProgress) {
        Ok(t) => t,
        // A setting that makes training diverge is a result of the sweep, not a failure of it.
        Err(e @ Error::Diverged { .. }) => return Ok(RunResult { status: format!("diverged: {e}"), ..base }),
        Err(e) => return Err(Error::Config(format!("sweep run {}: {e}", run.name))),
    };
    let kept = trained.saved_epoch.or(trained.log.last().map(|l| l.epoch)).unwrap_or(0);
    let line = trained.log.iter().find(|l| l.epoch == kept);
    debug_assert!(trained.saved_epoch.is_none() || best_epoch(&trained.log).map(|b| b.0) == trained.saved_epoch);
    Ok(RunResult {
        dims: trained.student.dims(),
        parameters: trained.student.num_parameters(),
        epochs: trained.log.len(),
        kept_epoch: kept,
        val_accuracy: line.and_then(|l| l.val_accuracy),
        val_agreement: line.and_then(|l| l.val_agreement),
        val_kl: line.and_then(|l| l.val_kl),
        train_seconds: info.train_seconds,
        reused: trained.reused,
        ..base
    })
}

/// The results table (`sweep.md`).
pub fn markdown(r: &SweepReport) -> String {
    use std::fmt::Write as _;
    let pct = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
    let mut s = String::new();
    let _ = writeln!(s, "# Sweep over {}\n", r.labels);
    let _ = writeln!(s, "{} runs, ranked by {} ({}).\n", r.runs.len(), r.metric, r.validation);
    let _ = writeln!(
        s,
        "| rank | run | parameters | epochs (kept) | val accuracy | val agreement | val KL | train s | status |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for (i, run) in r.runs.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {:.1} | {}{} |",
            i + 1,
            run.name,
            run.parameters,
            run.epochs,
            run.kept_epoch,
            pct(run.val_accuracy),
            pct(run.val_agreement),
            run.val_kl.map_or("-".into(), |k| format!("{k:.4}")),
            run.train_seconds,
            run.status.split(':').next().unwrap_or(""),
            if run.reused { " (reused)" } else { "" }
        );
    }
    match (&r.chosen, &r.test) {
        (Some(c), Some(t)) => {
            let _ = writeln!(
                s,
                "\nChosen: **{c}**. On the test data ({}): accuracy {}, agreement with the teacher {}. Only the \
                 chosen student is tested: a test metric over all runs would pick by it and overstate it.",
                r.test_data.as_deref().unwrap_or("-"),
                pct(t.accuracy),
                pct(t.teacher_agreement)
            );
        }
        (Some(c), None) => {
            let _ = writeln!(s, "\nChosen: **{c}** (no test data given: `sweep --test DATA` measures it).");
        }
        _ => {}
    }
    s
}

/// Measures the chosen run's student on `test` (a soft-label dataset, whose teacher outputs give the
/// agreement too, or labelled data with `spec`; `None` for its input column: the student's).
pub fn test_chosen(
    report: &mut SweepReport,
    test: &Path,
    spec: Option<crate::data::DataSpec>,
    progress: &dyn Progress,
) -> Result<()> {
    let Some(chosen) = report.runs.first().filter(|r| r.score().is_some()) else { return Ok(()) };
    let student = crate::student::io::load(&chosen.dir)?;
    let (source, teacher) = if test.join(crate::store::MANIFEST).is_file() {
        let labels = SoftLabels::open(test)?;
        let source = crate::data::open(test, &crate::data::DataSpec::new(crate::store::columns::INPUT))?;
        (source, Some(labels.load()?))
    } else {
        let spec = spec.unwrap_or_else(|| crate::data::DataSpec {
            image_prep: student.info.input_image.clone(),
            ..crate::data::DataSpec::new(&student.info.input_column)
        });
        (crate::data::open(test, &spec)?, None)
    };
    let r = crate::eval::evaluate(student.student.as_ref(), source.as_ref(), teacher.as_ref(), progress)?;
    report.test = Some(r);
    report.test_data = Some(test.display().to_string());
    Ok(())
}

/// Writes `sweep.json`, `sweep.md` and `sweep.svg` (validation metric against student size) into `out`.
pub fn write(report: &SweepReport, out: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Internal(e.to_string()))?;
    crate::util::write_atomic(&out.join("sweep.json"), &json)?;
    crate::util::write_atomic(&out.join("sweep.md"), markdown(report).as_bytes())?;
    crate::util::write_atomic(&out.join("sweep.svg"), crate::report::svg_sweep(report).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_make_a_base_and_a_grid_and_every_combination_is_a_run() {
        let mut spec = SweepSpec::default();
        spec.set("hidden=[64],[128, 32]").unwrap();
        spec.set("alpha=0.5,0.9").unwrap();
        spec.set("epochs=3").unwrap();
        spec.set("optimizer=sgd").unwrap();
        spec.set("lr=1").unwrap();
        let runs = spec.expand(true).unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        // Grid keys in sorted order, each combination once.
        assert_eq!(
            names,
            ["alpha=0.5_hidden=64", "alpha=0.5_hidden=128-32", "alpha=0.9_hidden=64", "alpha=0.9_hidden=128-32"]
        );
        let r = &runs[1].settings;
        assert_eq!((r.hidden.clone(), r.epochs, r.alpha, r.optimizer.lr()), (vec![128, 32], 3, 0.5, 1.0));
        assert_eq!(r.holdout.map(|h| h.fraction), Some(DEFAULT_VAL_FRACTION));
        assert!(matches!(r.optimizer, crate::optim::Optimizer::Sgd(_)));
        // A scalar for a list setting is a list of one; listed runs multiply with the grid.
        let file: SweepSpec =
            toml::from_str("[grid]\nhidden = [16, 32]\n[[run]]\nseed = 1\n[[run]]\nseed = 2\n").unwrap();
        let runs = file.expand(false).unwrap();
        assert_eq!(runs.len(), 4);
        assert_eq!((runs[3].name.as_str(), runs[3].settings.hidden.clone()), ("seed=2_hidden=32", vec![32]));
        assert_eq!(runs[3].settings.holdout, None);
    }

    #[test]
    fn bad_sweeps_are_refused_by_name() {
        let err = |spec: &str| toml::from_str::<SweepSpec>(spec).unwrap().expand(true).unwrap_err().to_string();
        assert!(err("[grid]\nepochz = [1, 2]").contains("[grid]: unknown setting `epochz`"));
        assert!(err("[base]\nthreads = 2").contains("a sweep splits the cores"));
        assert!(err("[grid]\nalpha = []").contains("[grid] alpha must be a non-empty list"));
        assert!(err("[grid]\nalpha = [0.5, 2.0]").contains("sweep run alpha=2: --alpha must be in [0, 1], got 2"));
        assert!(err("[grid]\nseed = [1, 1]").contains("two sweep runs have the same settings (seed=1)"));
        let e = format!("{}", toml::from_str::<SweepSpec>("extra = 1\n[grid]\nseed = [1]").unwrap_err());
        assert!(e.contains("unknown field `extra`"), "{e}");
        assert!(SweepSpec::default().set("alpha").unwrap_err().to_string().contains("expected KEY=VALUE"));
    }

    #[test]
    fn run_names_are_safe_folder_names() {
        let sets = vec![("hidden".to_string(), "64-32".to_string()), ("x".to_string(), "../../etc".to_string())];
        let name = run_name(&sets);
        assert!(!name.contains('/') && name.starts_with("hidden=64-32_x=..-..-etc"), "{name}");
        let long = vec![("k".to_string(), "v".repeat(300))];
        assert_eq!(run_name(&long).len(), 117);
    }
}
