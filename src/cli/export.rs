use std::path::PathBuf;

use clap::Args;
use softlabel::student;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The student folder (made by `softlabel train`).
    #[arg(long, value_name = "STUDENT_DIR")]
    pub student: PathBuf,
    /// The ONNX file to write (opset 17, dynamic batch); `<name>.safetensors` is written beside it.
    #[arg(long, value_name = "student.onnx")]
    pub out: PathBuf,
}

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let s = student::io::load(&a.student)?;
    let (onnx, st) = softlabel::export::export(&s, &a.out)?;
    let bytes = std::fs::metadata(&onnx)?.len();
    println!(
        "exported {} ({} parameters) to {} ({:.2} MB) and {}",
        s.student.arch().describe(),
        s.student.num_parameters(),
        onnx.display(),
        bytes as f64 / 1e6,
        st.display()
    );
    Ok(())
}
