use std::path::PathBuf;

use clap::Args;
use softlabel::student;

use super::DataArgs;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The student folder (made by `softlabel train`).
    #[arg(long, value_name = "STUDENT_DIR")]
    pub student: PathBuf,
    /// The ONNX file to write (opset 17, dynamic batch); `<name>.safetensors` is written beside it
    /// (float32 export only).
    #[arg(long, value_name = "student.onnx")]
    pub out: PathBuf,
    /// Write a quantized model instead: int8 weights (one scale per output channel), uint8 activations
    /// calibrated on input rows (QDQ form, which ONNX Runtime runs as integer kernels).
    #[arg(long)]
    pub int8: bool,
    /// Data to calibrate the int8 activations on (first 1024 rows; a Parquet file or folder, or a
    /// soft-label dataset). Default: the inputs stored in the labels the student learned from.
    #[arg(long, value_name = "PATH", requires = "int8")]
    pub calibration: Option<PathBuf>,
    #[command(flatten)]
    pub data_args: DataArgs,
}

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let s = student::io::load(&a.student)?;
    let described = format!("{} ({} parameters)", s.student.arch().describe(), s.student.num_parameters());
    if a.int8 && s.info.sequence.is_some() {
        anyhow::bail!(softlabel::Error::Config(
            "--int8 is not built for sequence students yet (their calibration rows are windows of a sequence \
             dataset): export the float32 model"
                .into()
        ));
    }
    if a.int8 {
        let (rows, source) = match &a.calibration {
            Some(path) => {
                let spec = a.data_args.student_spec(path, &s.info);
                let data = softlabel::data::open(path, &spec)?;
                let rows =
                    softlabel::export::calibration_rows(&s, data.as_ref(), softlabel::export::int8::CALIBRATION_ROWS)?;
                (rows, path.display().to_string())
            }
            None => softlabel::export::default_calibration(&s)?,
        };
        softlabel::export::export_int8(&s, &a.out, rows.view(), &source)?;
        let bytes = std::fs::metadata(&a.out)?.len();
        println!(
            "exported {described} as int8 to {} ({:.3} MB), calibrated on {} rows of {source}",
            a.out.display(),
            bytes as f64 / 1e6,
            rows.nrows()
        );
        return Ok(());
    }
    let (onnx, st) = softlabel::export::export(&s, &a.out)?;
    let bytes = std::fs::metadata(&onnx)?.len();
    println!("exported {described} to {} ({:.3} MB) and {}", onnx.display(), bytes as f64 / 1e6, st.display());
    Ok(())
}
