use std::path::{Path, PathBuf};

use clap::Args;
use softlabel::config::{Pipeline, PipelineOverrides};
use softlabel::pipeline::run as run_pipeline;
use softlabel::util::write_atomic;

use super::{pct, Bars};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file (TOML; see pipelines/mnist.toml).
    pub pipeline: PathBuf,
    /// Train with this seed instead of [student] seed, into DIR/student-seed-S with the summary in
    /// DIR/report-seed-S.json (the soft labels in DIR are shared by every seed).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Let the pipeline read and write anywhere under DIR (default: only under the pipeline file's own
    /// folder; a pipeline file may come from someone else).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Replace finished soft labels or a finished student in the output folder that were made with other
    /// settings (without it they are refused; matching ones are always reused).
    #[arg(long)]
    pub overwrite: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: RunArgs, ort_lib: Option<&Path>, bars: &Bars) -> anyhow::Result<()> {
    let p =
        Pipeline::load(&a.pipeline, &PipelineOverrides { seed: a.seed, root: a.root.clone(), overwrite: a.overwrite })?;
    let summary = p.summary.clone();
    let r = run_pipeline(&p, ort_lib, bars)?;
    let json = serde_json::to_string_pretty(&r)?;
    write_atomic(&p.file.output.dir.join(&summary), json.as_bytes())?;
    if a.json {
        println!("{json}");
        return Ok(());
    }
    let t = &r.test;
    println!("softlabel run {}", a.pipeline.display());
    println!(
        "  soft labels  {} (T = {}, {})",
        r.train_labels,
        r.temperature,
        match (r.train_labels_reused, r.resoftened_from) {
            (true, Some(made_at)) => format!("reused: made at T = {made_at}, stored logits re-softened"),
            (true, None) => "reused".to_string(),
            _ => format!("teacher pass {:.1}s", r.precompute_seconds),
        }
    );
    println!(
        "  teacher      {}: test accuracy {} ({} errors)",
        r.teacher,
        pct(t.teacher_accuracy),
        t.teacher_errors.map_or("-".into(), |e| e.to_string())
    );
    println!(
        "  student      {}, {} parameters, {}: test accuracy {} ({} errors)",
        r.student_architecture,
        r.student_parameters,
        if r.student_reused {
            "reused (same settings, labels and version)".to_string()
        } else {
            format!("trained in {:.1}s", r.train_seconds)
        },
        pct(t.accuracy),
        t.errors.map_or("-".into(), |e| e.to_string())
    );
    if let Some(sw) = &r.sweep {
        println!(
            "  sweep        {} runs ranked by {}: chosen {} ({})",
            sw.runs.len(),
            sw.metric,
            sw.chosen.as_deref().unwrap_or("-"),
            p.file.output.dir.join("sweep").join("sweep.md").display()
        );
    }
    println!(
        "  vs teacher   agreement {}, KL(teacher||student) {}, ECE student {} / teacher {}",
        pct(t.teacher_agreement),
        t.kl_to_teacher.map_or("-".into(), |k| format!("{k:.4}")),
        t.ece.map_or("-".into(), |k| format!("{k:.4}")),
        t.teacher_ece.map_or("-".into(), |k| format!("{k:.4}"))
    );
    if let Some(rep) = &r.report {
        let q = &rep.ratios;
        println!(
            "  deployment   student {} on disk, {:.1}x faster at batch 1 (p50 {:.3} vs {:.3} ms), {:.1}x throughput at batch 256, keeps {} of the teacher's accuracy",
            softlabel::report::size_ratio(q.smaller_x),
            q.latency_speedup_x,
            rep.student.latency_p50_ms,
            rep.teacher.latency_p50_ms,
            q.throughput_speedup_x,
            q.accuracy_kept_pct.map_or("-".into(), |v| format!("{v:.2}%"))
        );
        if let Some(q) = &rep.student_int8 {
            println!(
                "  int8         {} bytes, {} than the float student, p50 {:.3} ms, {:.0} rows/s at batch 256, test accuracy {}, same top class as float on {:.2}%",
                q.model.bytes,
                softlabel::report::size_ratio(rep.student.bytes as f64 / q.model.bytes.max(1) as f64),
                q.model.latency_p50_ms,
                q.model.throughput_rows_per_s,
                q.model.accuracy.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
                100.0 * q.agreement_with_float
            );
        }
        println!("  report       {}", p.file.output.report_dir().join("report.md").display());
    }
    println!("  student saved to {}; summary {}", r.student, p.file.output.dir.join(&summary).display());
    Ok(())
}
