use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The datasets to merge: the N shard outputs of one `precompute --shard I/N` run (all shards
    /// required), or datasets over disjoint rows made by the same teacher at the same temperature.
    #[arg(required = true, value_name = "DIR")]
    pub inputs: Vec<PathBuf>,
    /// Output folder for the merged dataset (parts are copied, not moved).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace the softlabel files of a non-empty output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the merged manifest as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: MergeArgs) -> anyhow::Result<()> {
    let m = softlabel::merge::merge(&a.inputs, &a.out, a.overwrite)?;
    if a.json {
        return super::print_json(&m);
    }
    println!("merged {} datasets: {} rows in {} part(s) to {}", a.inputs.len(), m.rows, m.parts.len(), a.out.display());
    Ok(())
}
