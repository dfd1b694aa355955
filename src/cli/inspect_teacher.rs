use std::path::{Path, PathBuf};

use clap::Args;

#[derive(Debug, Args)]
pub struct InspectTeacherArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// Print the values as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: InspectTeacherArgs, ort_lib: Option<&Path>) -> anyhow::Result<()> {
    let options = softlabel::teacher::TeacherOptions {
        threads: 1,
        ort_lib: ort_lib.map(Path::to_path_buf),
        ..Default::default()
    };
    let values = softlabel::teacher::graph::inspect(&a.model, &options)?;
    if a.json {
        return super::print_json(&values);
    }
    let shape = |s: &[i64]| {
        let dims: Vec<String> = s.iter().map(|&d| if d < 0 { "?".to_string() } else { d.to_string() }).collect();
        format!("[{}]", dims.join(", "))
    };
    let width = values.iter().map(|v| v.name.len()).max().unwrap_or(4).max(4);
    println!("{:width$}  {:14}  {:9}  shape", "name", "op", "type");
    for v in &values {
        let mark = if v.is_output { "  (output)" } else { "" };
        println!("{:width$}  {:14}  {:9}  {}{mark}", v.name, v.op_type, v.element_type, shape(&v.shape));
    }
    Ok(())
}
