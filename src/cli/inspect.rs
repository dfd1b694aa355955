use std::path::PathBuf;

use clap::Args;
use softlabel::store::SoftLabels;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A soft-label dataset folder.
    pub dir: PathBuf,
    /// Print the manifest as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let ds = SoftLabels::open(&a.dir)?;
    let m = ds.manifest();
    if a.json {
        return super::print_json(m);
    }
    let bytes: u64 = m.parts.iter().map(|p| p.bytes).sum();
    println!("{}", a.dir.display());
    println!("  schema version  {} ({})", m.schema_version, m.created_by);
    println!(
        "  rows            {} ({} labeled) in {} part(s), {:.1} MB, {:.0} bytes/row",
        m.rows,
        m.labeled_rows,
        m.parts.len(),
        bytes as f64 / 1e6,
        bytes as f64 / m.rows.max(1) as f64
    );
    println!(
        "  classes         {}{}",
        m.num_classes,
        m.class_names.as_ref().map(|n| format!(" ({})", n.join(", "))).unwrap_or_default()
    );
    println!("  temperature     {}", m.temperature);
    let form = match m.form {
        softlabel::store::LabelForm::Dense => "dense (logits, soft)".to_string(),
        softlabel::store::LabelForm::TopK { k } => {
            format!("top-{k} (topk_index, topk_logit, logsumexp_t{})", if m.label_logit { ", label_logit" } else { "" })
        }
        softlabel::store::LabelForm::Sampled { k, seed } => format!("{k} samples per row, seed {seed} (sample_index)"),
    };
    let inputs = if m.input.stored { "" } else { ", inputs not stored" };
    println!("  form            {form}{}{inputs}", if m.float16 { ", float16" } else { "" });
    if let Some(q) = &m.sequence {
        println!(
            "  sequence        {} positions a row, one stored row per unmasked position; targets {} ({}){}{}",
            q.length,
            q.targets,
            match q.targets {
                softlabel::store::Targets::Same => "labels are each position's own",
                softlabel::store::Targets::Next => "position t predicts token t + 1",
            },
            q.pad_id.map_or(String::new(), |p| format!(", pad id {p}")),
            q.mask_input.as_ref().map_or(String::new(), |n| format!(", mask fed to '{n}'"))
        );
    }
    if let Some(v) = &m.views {
        println!(
            "  views           {} per source row (view 0 unshifted), shifts up to {} px, image {}x{}x{}, seed {}",
            v.count, v.max_shift, v.image[0], v.image[1], v.image[2], v.seed
        );
    }
    match &m.teacher.imported {
        Some(i) => println!(
            "  teacher         imported from {} ({} '{}', {} rows{}{}) sha256 {}",
            m.teacher.file,
            i.format,
            i.column,
            i.rows,
            i.teacher_name.as_ref().map_or(String::new(), |n| format!(", teacher {n}")),
            i.teacher_id.as_ref().map_or(String::new(), |n| format!(" {n}")),
            m.teacher.sha256
        ),
        None => println!("  teacher         {} sha256 {}", m.teacher.file, m.teacher.sha256),
    }
    println!(
        "  input           '{}' {:?} x {} shape {:?}",
        m.input.source_column, m.input.dtype, m.input.width, m.input.shape
    );
    if !m.teacher.extra_inputs.is_empty() {
        println!("  fed to teacher  '{}' as input '{}' (stored)", m.input.source_column, m.teacher.input_name);
    }
    for e in &m.teacher.extra_inputs {
        println!(
            "  fed to teacher  '{}' {:?} x {} as input '{}' {:?} {:?} (not stored)",
            e.column, e.dtype, e.width, e.name, e.input_type, e.input_shape
        );
    }
    println!("  source          {} file(s), fingerprint {}", m.source.files.len(), m.source.fingerprint);
    for p in &m.parts {
        println!("  {}  {} rows  ids {}..={}  sha256 {}", p.file, p.rows, p.min_id, p.max_id, p.sha256);
    }
    Ok(())
}
