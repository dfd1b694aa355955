use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The soft-label dataset folder.
    pub dir: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: VerifyArgs) -> anyhow::Result<()> {
    let v = softlabel::verify::verify(&a.dir)?;
    if a.json {
        return super::print_json(&v);
    }
    let soft = v.max_soft_error.map(|e| format!("; max |soft - softmax(logits/T)| = {e:.1e}")).unwrap_or_default();
    println!("{}: ok ({} rows in {} part(s){soft})", a.dir.display(), v.rows, v.parts);
    Ok(())
}
