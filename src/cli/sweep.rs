use std::path::PathBuf;

use clap::Args;
use softlabel::store::SoftLabels;
use softlabel::sweep::{SweepJob, SweepSpec};

use super::{pct, Bars, DataArgs};

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The soft-label dataset every student learns from.
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,
    /// The sweep folder: one student folder per run, and sweep.md, sweep.json, sweep.svg.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A sweep file: `[base]` settings, a `[grid]` of values, `[[run]]` tables, `parallel` (the keys of
    /// `softlabel train`, as in a pipeline's [student]).
    #[arg(long, value_name = "SWEEP.toml")]
    pub file: Option<PathBuf>,
    /// A setting: one value for every run, or several (comma-separated, TOML values: 0.5, [64,32], sgd)
    /// for a grid axis. Repeatable; adds to --file.
    #[arg(long = "set", value_name = "KEY=V[,V...]")]
    pub sets: Vec<String>,
    /// Validation data instead of rows held out of the labels (default: 10% of the ids held out, the
    /// same rows for every run).
    #[arg(long, value_name = "PATH")]
    pub val: Option<PathBuf>,
    #[command(flatten)]
    pub val_args: DataArgs,
    /// Test data for the chosen student only (a soft-label dataset adds agreement with the teacher).
    #[arg(long, value_name = "PATH")]
    pub test: Option<PathBuf>,
    /// The source data, for labels made with `precompute --no-inputs`.
    #[arg(long, value_name = "PATH")]
    pub inputs: Option<PathBuf>,
    /// Runs trained at the same time (default: the file's `parallel`, else as many as the threads).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Training threads in all, split between the parallel runs (0: all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Replace finished runs made with other settings (finished runs with the same are always reused).
    #[arg(long)]
    pub overwrite: bool,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: SweepArgs, bars: &Bars) -> anyhow::Result<()> {
    let mut spec = match &a.file {
        Some(f) => SweepSpec::load(f)?,
        None => SweepSpec::default(),
    };
    for s in &a.sets {
        spec.set(s)?;
    }
    let runs = spec.expand(a.val.is_none())?;
    let labels = SoftLabels::open(&a.labels)?;
    let m = labels.manifest().clone();
    // A sequence dataset's validation rows are windows of one width: every run must read the same.
    let of = |r: &softlabel::sweep::SweepRun| (r.settings.window, r.settings.embed.as_ref().and_then(|e| e.pad_id));
    let window = runs.first().map_or((0, None), of);
    if m.sequence.is_some() && a.val.is_some() && runs.iter().any(|r| of(r) != window) {
        anyhow::bail!(softlabel::Error::Config(
            "--val on a sequence dataset takes one window: give window in the sweep's base, not its grid".into()
        ));
    }
    let val = a.val_args.val_set(a.val.as_deref(), &m, window)?;
    let job = SweepJob {
        labels: &labels,
        runs: &runs,
        out: &a.out,
        val: val.as_ref(),
        join: a.inputs.as_deref().map(|p| (p, false)),
        parallel: a.parallel.unwrap_or(spec.parallel),
        threads: a.threads,
        overwrite: a.overwrite,
    };
    let mut report = softlabel::sweep::run(&job, bars)?;
    if let Some(test) = &a.test {
        softlabel::sweep::test_chosen(&mut report, test, None, bars)?;
    }
    softlabel::sweep::write(&report, &a.out)?;
    if a.json {
        return super::print_json(&report);
    }
    println!("{}", softlabel::sweep::markdown(&report).trim_end());
    if let (Some(c), Some(t)) = (&report.chosen, &report.test) {
        println!("\nchosen {c}: test accuracy {}, agreement {}", pct(t.accuracy), pct(t.teacher_agreement));
    }
    println!("\nwrote {}/sweep.md, sweep.json, sweep.svg", a.out.display());
    Ok(())
}
