use std::path::PathBuf;

use clap::Args;
use softlabel::eval::evaluate;
use softlabel::store::SoftLabels;
use softlabel::student;

use super::{pct, Bars, DataArgs};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The student folder (made by `softlabel train`).
    #[arg(long, value_name = "STUDENT_DIR")]
    pub student: PathBuf,
    /// Data to evaluate on: a Parquet file or folder, or a soft-label dataset.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    #[command(flatten)]
    pub data_args: DataArgs,
    /// The teacher's soft labels for the same rows (matched by id): adds agreement, KL and teacher accuracy.
    #[arg(long, value_name = "DIR")]
    pub labels: Option<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EvalArgs, bars: &Bars) -> anyhow::Result<()> {
    let s = student::io::load(&a.student)?;
    if a.data.join(softlabel::store::MANIFEST).is_file() {
        let labels = SoftLabels::open(&a.data)?;
        if let Some(seq) = labels.manifest().sequence.clone() {
            return sequence(&a, &s, &labels, &seq);
        }
    }
    let spec = a.data_args.student_spec(&a.data, &s.info);
    let source = softlabel::data::open(&a.data, &spec)?;
    let teacher = match &a.labels {
        Some(dir) => {
            let labels = SoftLabels::open(dir)?;
            if labels.manifest().num_classes != s.student.num_classes() {
                anyhow::bail!(softlabel::Error::dataset(
                    dir,
                    format!(
                        "labels have {} classes, the student {}",
                        labels.manifest().num_classes,
                        s.student.num_classes()
                    )
                ));
            }
            let outputs = labels.load()?;
            outputs.check_made_from(labels.manifest(), source.as_ref(), &a.data)?;
            Some(outputs)
        }
        None => None,
    };
    let r = evaluate(s.student.as_ref(), source.as_ref(), teacher.as_ref(), bars)?;
    if a.json {
        return super::print_json(&r);
    }
    println!("student {} on {} ({} rows)", a.student.display(), a.data.display(), r.rows);
    println!(
        "  accuracy  {}  errors {}  ECE {}  NLL {}",
        pct(r.accuracy),
        r.errors.map_or("-".into(), |e| e.to_string()),
        r.ece.map_or("-".into(), |e| format!("{e:.4}")),
        r.nll.map_or("-".into(), |e| format!("{e:.4}"))
    );
    if !r.class_errors.is_empty() {
        let per: Vec<String> = r
            .class_errors
            .iter()
            .zip(&r.class_rows)
            .enumerate()
            .map(|(c, (e, n))| {
                let name = s.info.class_names.as_ref().and_then(|names| names.get(c)).cloned();
                format!("{}:{e}/{n}", name.unwrap_or_else(|| c.to_string()))
            })
            .collect();
        println!("  errors by class  {}", per.join(" "));
    }
    if r.teacher_rows.is_some() {
        println!(
            "  teacher   accuracy {}  errors {}  agreement {}  KL(teacher||student) {}",
            pct(r.teacher_accuracy),
            r.teacher_errors.map_or("-".into(), |e| e.to_string()),
            pct(r.teacher_agreement),
            r.kl_to_teacher.map_or("-".into(), |k| format!("{k:.4}"))
        );
    }
    Ok(())
}

/// A sequence dataset: the student on each stored position's window of tokens, against the position's
/// label and the teacher's output there (per-token accuracy, agreement, and KL for dense labels).
fn sequence(
    a: &EvalArgs,
    s: &student::io::StudentFile,
    labels: &SoftLabels,
    seq: &softlabel::store::Sequence,
) -> anyhow::Result<()> {
    let m = labels.manifest();
    let width = s.student.input_width();
    let window = seq.window_of_width(width).ok_or_else(|| {
        softlabel::Error::Config(format!(
            "the student reads {width} tokens a position, which no --window gives for --targets {}",
            seq.targets
        ))
    })?;
    if m.num_classes != s.student.num_classes() {
        anyhow::bail!(softlabel::Error::dataset(
            &a.data,
            format!("has {} classes, the student {}", m.num_classes, s.student.num_classes())
        ));
    }
    let spec = a.data_args.student_spec(&a.data, &s.info);
    let pad = s.student.arch().embed.and_then(|e| e.pad_id);
    let val = softlabel::train::ValSet::load(&a.data, &spec, m.num_classes, m.input.width, (window, pad))?;
    let r = val.measure(s.student.as_ref());
    let sequences = labels.ids()?.into_iter().collect::<std::collections::HashSet<_>>().len();
    if a.json {
        return super::print_json(&serde_json::json!({
            "tokens": val.len(),
            "sequences": sequences,
            "window": window,
            "targets": seq.targets.to_string(),
            "accuracy": r.accuracy,
            "errors": r.errors,
            "agreement": r.agreement,
            "kl": r.kl,
        }));
    }
    println!(
        "student {} on {} ({} tokens of {sequences} sequences, window {window}, targets {})",
        a.student.display(),
        a.data.display(),
        val.len(),
        seq.targets
    );
    println!(
        "  per-token accuracy {}  errors {}  agreement with the teacher {}  KL(teacher||student, T = 1) {}",
        pct(r.accuracy),
        r.errors.map_or("-".into(), |e| e.to_string()),
        pct(r.agreement),
        r.kl.map_or("-".into(), |k| format!("{k:.4}"))
    );
    Ok(())
}
