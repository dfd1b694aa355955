//! `softlabel loss`: the distillation loss of given student logits against a soft-label dataset, as
//! training computes it, so another implementation (a PyTorch training loop, the Python reader's losses)
//! can be checked against it.

use std::path::PathBuf;

use clap::Args;
use softlabel::distill::{row_losses, Kd};
use softlabel::store::SoftLabels;

#[derive(Debug, Args)]
pub struct LossArgs {
    /// The soft-label dataset.
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,
    /// The student's logits: a float32 .npy of [rows, K], rows in the dataset's stored order (parts in
    /// the manifest's order, rows in part order: what `pyarrow.dataset` and the Python reader give).
    #[arg(long, value_name = "LOGITS.npy")]
    pub logits: PathBuf,
    /// Temperature (default: the labels').
    #[arg(long, short = 'T', value_name = "T", allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Weight of the distillation term (1 - alpha on the hard labels).
    #[arg(long, default_value_t = 0.9, value_name = "A")]
    pub alpha: f32,
    /// Print every row's loss (one JSON list) besides the mean.
    #[arg(long)]
    pub per_row: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: LossArgs) -> anyhow::Result<()> {
    let labels = SoftLabels::open(&a.labels)?;
    let m = labels.manifest();
    let t = a.temperature.unwrap_or(m.temperature);
    softlabel::config::check_temperature(t, &softlabel::config::Origin::Flags, "temperature")?;
    if !(0.0..=1.0).contains(&a.alpha) {
        anyhow::bail!(softlabel::Error::Config(format!("--alpha must be in [0, 1], got {}", a.alpha)));
    }
    if !m.form.is_dense() && t != m.temperature {
        anyhow::bail!(softlabel::Error::Config(format!(
            "{} labels hold the teacher at T = {} only; the loss at T = {t} needs dense labels",
            m.form.name(),
            m.temperature
        )));
    }
    let rows = labels.load()?;
    let spec = softlabel::data::DataSpec::new("input");
    let source = softlabel::data::open(&a.logits, &spec)?;
    let k = source.width().unwrap_or(0);
    if k != m.num_classes {
        anyhow::bail!(softlabel::Error::data(
            &a.logits,
            format!("rows have {k} values, the labels have {} classes", m.num_classes)
        ));
    }
    let values: Vec<f32> =
        source.batches(8192).map(|b| b.map(|b| b.input_f32())).collect::<softlabel::Result<Vec<_>>>()?.concat();
    let logits = ndarray::Array2::from_shape_vec((values.len() / k.max(1), k), values)?;
    let kd = Kd { t, alpha: a.alpha, num_classes: m.num_classes, origin: a.labels.clone() };
    let losses = row_losses(&kd, &rows, logits.view())?;
    let mean = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
    if a.json {
        let mut out = serde_json::json!({"rows": losses.len(), "temperature": t, "alpha": a.alpha, "mean": mean});
        if a.per_row {
            out["per_row"] = serde_json::json!(losses);
        }
        return super::print_json(&out);
    }
    println!("{} rows, T = {t}, alpha = {}: mean loss {mean:.9}", losses.len(), a.alpha);
    Ok(())
}
