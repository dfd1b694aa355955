use std::path::PathBuf;

use clap::Args;
use softlabel::eval::tune_bias;
use softlabel::student::{self, io::BiasAdjustment};

use super::DataArgs;

#[derive(Debug, Args)]
pub struct AdjustBiasArgs {
    /// The student folder (made by `softlabel train`).
    #[arg(long, value_name = "STUDENT_DIR")]
    pub student: PathBuf,
    /// The class whose output bias changes.
    #[arg(long, value_name = "Y")]
    pub class: usize,
    /// Add this to the bias.
    #[arg(long, value_name = "X", allow_negative_numbers = true, required_unless_present = "tune_on")]
    pub by: Option<f32>,
    /// Choose the change that minimises errors on these labeled rows (Parquet file or folder, or a
    /// soft-label dataset); use data the student will not be scored on.
    #[arg(long, value_name = "PATH", conflicts_with = "by")]
    pub tune_on: Option<PathBuf>,
    #[command(flatten)]
    pub data_args: DataArgs,
    /// Search changes in [-RANGE, RANGE].
    #[arg(long, default_value_t = 10.0, value_name = "RANGE")]
    pub range: f32,
    /// Search step.
    #[arg(long, default_value_t = 0.1, value_name = "STEP")]
    pub step: f32,
    /// The adjusted student's folder (a copy; the original is left as it is).
    #[arg(long, value_name = "STUDENT_DIR")]
    pub out: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: AdjustBiasArgs) -> anyhow::Result<()> {
    let mut s = student::io::load(&a.student)?;
    let k = s.student.num_classes();
    if a.class >= k {
        anyhow::bail!(softlabel::Error::Config(format!("--class {} is outside the student's {k} classes", a.class)));
    }
    let (by, chosen_on, tuning) = match (a.by, &a.tune_on) {
        (Some(by), _) if by.is_finite() => (by, "given".to_string(), None),
        (Some(by), _) => anyhow::bail!(softlabel::Error::Config(format!("--by {by} is not finite"))),
        (None, Some(path)) => {
            let source = softlabel::data::open(path, &a.data_args.student_spec(path, &s.info))?;
            if source.label_column().is_none() {
                anyhow::bail!(softlabel::Error::data(path, "has no label column (pass --label-column)"));
            }
            let t = tune_bias(s.student.as_ref(), source.as_ref(), a.class, a.range, a.step)?;
            (t.by, path.display().to_string(), Some(t))
        }
        (None, None) => anyhow::bail!(softlabel::Error::Config("pass --by X or --tune-on DATA".into())),
    };
    if let Some(b) = s.student.output_bias_mut().get_mut(a.class) {
        *b += by;
    }
    s.info.bias_adjustments.push(BiasAdjustment { class: a.class, by, chosen_on });
    let log = student::io::load_log(&a.student)?;
    student::io::save(&a.out, s.student.as_ref(), &mut s.info, &log)?;
    if a.json {
        return super::print_json(&serde_json::json!({ "class": a.class, "by": by, "tuning": tuning }));
    }
    match tuning {
        Some(t) => println!(
            "class {} bias {:+.2}: errors on {} tuning rows {} -> {}; saved to {}",
            a.class,
            by,
            t.rows,
            t.errors_before,
            t.errors_after,
            a.out.display()
        ),
        None => println!("class {} bias {by:+.2}; saved to {}", a.class, a.out.display()),
    }
    Ok(())
}
