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
    println!(
        "{}: ok ({} rows in {} part(s); max |soft - softmax(logits/T)| = {:.1e})",
        a.dir.display(),
        v.rows,
        v.parts,
        v.max_soft_error
    );
    Ok(())
}
