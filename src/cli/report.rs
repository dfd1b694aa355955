use std::path::{Path, PathBuf};

use clap::Args;
use softlabel::report::{report, ReportSettings};

use super::{pct, Bars, DataArgs};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The teacher ONNX model.
    #[arg(long, value_name = "T.onnx")]
    pub teacher: PathBuf,
    /// The student folder (made by `softlabel train`); exported to ONNX for timing.
    #[arg(long, value_name = "STUDENT_DIR")]
    pub student: PathBuf,
    /// Labeled test data (Parquet file/folder, or a soft-label dataset).
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    #[command(flatten)]
    pub data_args: DataArgs,
    /// The teacher's soft labels for the same rows (else the teacher is run on the data).
    #[arg(long, value_name = "DIR")]
    pub labels: Option<PathBuf>,
    /// Output folder: report.md, report.json, student.onnx, plots (SVG).
    #[arg(long, value_name = "REPORT_DIR")]
    pub out: PathBuf,
    /// ONNX Runtime intra-op threads for both models (0: all cores).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,
    /// Timed batch-1 runs per model for the latency percentiles.
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub latency_runs: usize,
    /// Also export the student as int8 (calibrated on the inputs of the labels it learned from) and
    /// measure it beside the float student.
    #[arg(long)]
    pub int8: bool,
    /// A teacher with several inputs: feed model input NAME from data column COLUMN, repeated for every
    /// input, the first the student's input (as for precompute).
    #[arg(long, value_name = "NAME=COLUMN")]
    pub input: Vec<softlabel::config::teacher::InputMap>,
    /// Print report.json on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ReportArgs, ort_lib: Option<&Path>, bars: &Bars) -> anyhow::Result<()> {
    if let Some(lib) = ort_lib {
        softlabel::teacher::environment(Some(lib))?;
    }
    let student = softlabel::student::io::load(&a.student)?;
    let settings = ReportSettings {
        spec: a.data_args.student_spec(&a.data, &student.info),
        teacher: a.teacher,
        student: a.student,
        data: a.data,
        labels: a.labels,
        out: a.out,
        threads: a.threads,
        latency_runs: a.latency_runs.max(10),
        int8: a.int8,
        inputs: a.input,
    };
    let r = report(&settings, bars)?;
    if a.json {
        return super::print_json(&r);
    }
    let q = &r.ratios;
    println!("report written to {}", settings.out.join("report.md").display());
    let int8 = r.student_int8.as_ref().map(|q| ("int8   ", &q.model));
    for (name, m) in [("teacher", &r.teacher), ("student", &r.student)].into_iter().chain(int8) {
        println!(
            "  {name}  {} params, {:.2} MB, p50 {:.3} ms, {:.0} rows/s, accuracy {}",
            m.parameters,
            m.bytes as f64 / 1e6,
            m.latency_p50_ms,
            m.throughput_rows_per_s,
            pct(m.accuracy)
        );
    }
    println!(
        "  student is {}, {:.1}x faster at batch 1, {:.1}x at batch 256, keeps {} of the accuracy",
        softlabel::report::size_ratio(q.smaller_x),
        q.latency_speedup_x,
        q.throughput_speedup_x,
        q.accuracy_kept_pct.map_or("-".into(), |v| format!("{v:.2}%"))
    );
    Ok(())
}
