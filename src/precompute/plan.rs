//! Everything decided before the first row is scored: the source, the teacher and the classes it
//! outputs (probed on the first batch), the views, the manifest, and the writer (fresh or resumed).

use std::path::Path;

use super::{Infer, PrecomputeSettings, Probe};
use crate::augment::Views;
use crate::data::{Batch, Source};
use crate::error::{Error, Result};
use crate::store::{
    EnsembleInfo, InputInfo, LabelForm, Manifest, Resumed, SoftLabelWriter, SoftLabels, TeacherInfo, FORMAT,
    SCHEMA_VERSION, SCHEMA_VERSION_SPARSE, SCHEMA_VERSION_VIEWS,
};
use crate::teacher::{Ensemble, Imported, OutputKind, Teacher};
use crate::util::{refuse_overlap, OutputLock};
use roaring::RoaringTreemap;

/// A teacher pass ready to run.
pub struct Plan<'s> {
    /// The settings.
    pub settings: &'s PrecomputeSettings,
    /// The input rows.
    pub source: Box<dyn Source>,
    /// The teacher (one model, an ensemble, or imported outputs).
    pub teacher: Box<dyn Infer>,
    /// Values per input row.
    pub width: usize,
    /// The input column(s), named in errors.
    pub column: String,
    /// K.
    pub num_classes: usize,
    /// The views every row is stored with.
    pub views: Option<Views>,
    /// The writer (after the committed parts of a resumed run).
    pub writer: SoftLabelWriter,
    /// Source rows already covered by committed parts.
    pub skip: u64,
    /// Ids already committed.
    pub seen: RoaringTreemap,
    /// This process's exclusive hold on the output folder, for as long as the plan runs.
    pub lock: OutputLock,
    /// The first batch and the teacher's outputs for it, from the probe.
    pub probe: Option<Probe>,
}

/// What [`Plan::make`] found.
pub enum Planned<'s> {
    /// The dataset is already complete (a resumed run that had finished): its manifest.
    Complete(Box<Manifest>),
    /// Work to do.
    Run(Box<Plan<'s>>),
}

impl<'s> Plan<'s> {
    /// Opens the source and the teacher, probes the teacher on the first batch, and opens the writer.
    pub fn make(settings: &'s PrecomputeSettings) -> Result<Planned<'s>> {
        let inputs: Vec<&Path> = std::iter::once(settings.data.as_path())
            .chain(settings.teachers.iter().map(|t| t.as_path()))
            .chain(settings.import.iter().map(|i| i.outputs.as_path()))
            .collect();
        refuse_overlap(&settings.out, "--out", &inputs)?;
        let lock = OutputLock::acquire(&settings.out)?;
        let mut source = crate::data::open(&settings.data, &settings.spec)?;
        let mut pass = match &settings.import {
            Some(src) => {
                let imported = Imported::load(src)?;
                if let (Some(top), LabelForm::TopK { k }) = (imported.top_k(), settings.form) {
                    if top != k {
                        return Err(Error::Config(format!(
                            "{} holds the top {top} log-probabilities a row: store them with --top-k {top}, not {k}",
                            src.outputs.display()
                        )));
                    }
                }
                Pass::Imported(imported)
            }
            None => Pass::Models(Ensemble::load(&settings.teachers, &settings.teacher_options, settings.combine)?),
        };
        // An image folder's rows take the teacher's channels, size and layout.
        match &pass {
            Pass::Models(e) => source.conform(&e.first().input_shape()[1..])?,
            Pass::Imported(_) => source.conform(&[])?,
        }
        if source.rows() == 0 {
            return Err(Error::data(&settings.data, "dataset has zero rows"));
        }
        // The width comes from the schema when fixed, else from the first batch.
        let width = match source.width() {
            Some(w) => w,
            None => match source.batches(1).next() {
                Some(b) => b?.width,
                None => return Err(Error::data(&settings.data, "dataset has zero rows")),
            },
        };
        let column = source.input_name();
        let row_shape = match &mut pass {
            Pass::Models(e) => e.prepare(width, &column)?,
            Pass::Imported(_) => vec![width],
        };
        let sequence = sequence_of(&pass, settings, &row_shape, source.as_ref())?;
        let views = settings.views.map(|v| v.resolve(width, &row_shape)).transpose()?;
        if views.as_ref().is_some_and(|v| v.crop.is_some()) && source.view_renderer().is_none() {
            return Err(Error::Config(format!(
                "--crop-scale makes crop views of images; {} is not an image folder or a list of images",
                settings.data.display()
            )));
        }
        // A resumed run must know the source is the one its committed parts came from before it goes on;
        // a fresh run hashes it while rows are scored (a 100 GB source would be minutes of reading first).
        let source_info = match settings.resume {
            true => source.source_info()?,
            false => crate::data::SourceInfo { files: Vec::new(), fingerprint: String::new() },
        };

        // A first inference call learns K before any output exists (models often leave it dynamic) and,
        // with --teacher-output auto, what the outputs are (logits, probabilities or log-probabilities).
        let first = source
            .batches(settings.batch_size)
            .next()
            .ok_or_else(|| Error::data(&settings.data, "dataset has zero rows"))??;
        check_width(&first, width, &column)?;
        // The further inputs' types and widths, as the first batch has them (later batches must match).
        let probe_extra: Vec<(String, crate::data::ElementType, usize)> = first
            .extra
            .iter()
            .map(|e| {
                let dtype = crate::data::ElementType::from_arrow(e.values.data_type())
                    .ok_or_else(|| Error::Internal(format!("column '{}' is not numeric", e.column)))?;
                Ok((e.column.clone(), dtype, e.width))
            })
            .collect::<Result<_>>()?;
        let (probe_logits, num_classes) = pass.infer(&first)?;
        let probe_features = pass.take_features();
        if num_classes > crate::store::MAX_CLASSES {
            return Err(Error::model(
                pass.path(),
                format!(
                    "outputs {num_classes} classes; a soft-label dataset holds at most {}",
                    crate::store::MAX_CLASSES
                ),
            ));
        }
        if let LabelForm::TopK { k } = settings.form {
            if k == 0 || k > num_classes {
                return Err(Error::Config(format!("--top-k {k} must be in 1..={num_classes} (the teacher's classes)")));
            }
        }
        if let Some(names) = &settings.class_names {
            if names.len() != num_classes {
                return Err(Error::Config(format!(
                    "--class-names lists {} names, teacher {} has {num_classes} classes",
                    names.len(),
                    pass.path().display()
                )));
            }
        }
        // Class names: the user's, else the data's own (an image folder's subfolders) when they name
        // exactly the teacher's classes.
        let class_names = settings.class_names.clone().or_else(|| {
            let names = source.class_names()?;
            if names.len() == num_classes {
                Some(names)
            } else {
                tracing::warn!(
                    folders = names.len(),
                    classes = num_classes,
                    "the data's classes (class folders or listed labels) do not match the teacher's: class names not recorded"
                );
                None
            }
        });
        let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (members, ensemble) = match &pass {
            Pass::Models(e) => {
                let m: Vec<TeacherInfo> = e
                    .members()
                    .iter()
                    .map(|m| member_info(m, &file_name(m.path()), source.element_type(), &probe_extra))
                    .collect();
                (m, Some((e.sha256(), e.combine())))
            }
            Pass::Imported(i) => (vec![imported_info(i, settings, width)], None),
        };
        // The label's logit beside the top k, where the teacher ran (imported top-k outputs hold only
        // their k values) and the rows have labels (a language model's are the next tokens).
        let label_logit = matches!(settings.form, LabelForm::TopK { .. })
            && matches!(pass, Pass::Models(_))
            && (source.label_column().is_some()
                || sequence.as_ref().is_some_and(|s| s.targets == crate::store::Targets::Next));
        let manifest = Manifest {
            format: FORMAT.into(),
            schema_version: if sequence.is_some() {
                crate::store::SCHEMA_VERSION_SEQUENCE
            } else if label_logit {
                crate::store::SCHEMA_VERSION_LABEL_LOGIT
            } else if !settings.teacher_options.features.is_empty()
                && settings.teacher_options.feature_pool == crate::teacher::FeaturePool::Attention
            {
                crate::store::SCHEMA_VERSION_ATTENTION
            } else if !settings.teacher_options.features.is_empty() {
                crate::store::SCHEMA_VERSION_FEATURES
            } else if views.as_ref().is_some_and(|v| v.crop.is_some()) {
                crate::store::SCHEMA_VERSION_CROP_VIEWS
            } else if members.iter().any(|m| m.output_kind == OutputKind::TopkLogProbs) {
                crate::store::SCHEMA_VERSION_TOPK_IMPORT
            } else if source.image_prep().is_some() {
                crate::store::SCHEMA_VERSION_IMAGES
            } else if members.iter().any(|m| !m.extra_inputs.is_empty()) {
                crate::store::SCHEMA_VERSION_MULTI_INPUT
            } else if members.iter().any(|m| m.imported.is_some()) {
                crate::store::SCHEMA_VERSION_IMPORT
            } else if members.iter().any(|m| m.input_type.is_some()) {
                crate::store::SCHEMA_VERSION_INPUT_TYPE
            } else if views.is_some() {
                SCHEMA_VERSION_VIEWS
            } else if settings.form.is_dense() && !settings.float16 {
                SCHEMA_VERSION
            } else {
                SCHEMA_VERSION_SPARSE
            }
            .into(),
            created_by: format!("softlabel {}", env!("CARGO_PKG_VERSION")),
            temperature: settings.temperature,
            num_classes,
            class_names,
            teacher: if members.len() == 1 {
                members[0].clone()
            } else {
                TeacherInfo {
                    file: members.iter().map(|m| m.file.as_str()).collect::<Vec<_>>().join("+"),
                    sha256: ensemble.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
                    output_name: "ensemble".into(),
                    output_kind: OutputKind::Logits,
                    ..members[0].clone()
                }
            },
            ensemble: ensemble
                .filter(|_| members.len() > 1)
                .map(|(_, combine)| EnsembleInfo { combine, members: members.clone() }),
            // A sequence dataset's row is one position: its token.
            input: InputInfo {
                source_column: column.clone(),
                dtype: source.element_type(),
                width: if sequence.is_some() { 1 } else { width },
                shape: if sequence.is_some() { vec![1] } else { row_shape.clone() },
                stored: !settings.no_inputs,
                image: source.image_prep(),
            },
            label_column: source.label_column().map(str::to_string),
            id_column: source.id_column().map(str::to_string),
            source: source_info,
            rows: 0,
            labeled_rows: 0,
            parts: Vec::new(),
            checksum: String::new(),
            shard: settings.shard,
            skipped_nonfinite_rows: 0,
            form: settings.form,
            float16: settings.float16,
            label_logit,
            sequence,
            views,
            features: match &pass {
                Pass::Models(e) => e
                    .first()
                    .feature_shapes()
                    .into_iter()
                    .map(|f| crate::store::FeatureInfo {
                        column: format!("feature.{}", f.name),
                        name: f.name,
                        shape: f.shape,
                        pool: settings.teacher_options.feature_pool,
                        projection_seed: settings
                            .teacher_options
                            .feature_dim
                            .map(|_| settings.teacher_options.feature_seed),
                        width: f.width,
                    })
                    .collect(),
                Pass::Imported(_) => Vec::new(),
            },
        };
        let (writer, skip) = if settings.resume {
            match SoftLabelWriter::resume(&settings.out, manifest, settings.writer.clone(), settings.batch_size)? {
                Resumed::Complete(m) => return Ok(Planned::Complete(m)),
                Resumed::Continue { writer, source_rows_done } => (*writer, source_rows_done),
            }
        } else {
            (SoftLabelWriter::create(&settings.out, manifest, settings.writer.clone(), settings.batch_size)?, 0)
        };
        // Ids already committed count for the duplicate check.
        let mut seen = RoaringTreemap::new();
        if !writer.manifest().parts.is_empty() {
            let committed = SoftLabels::from_parts(writer.dir(), writer.manifest().clone());
            seen.extend(committed.ids()?);
            tracing::info!(rows = seen.len(), skip, "resuming after committed parts");
        }
        // The probe's outputs stand in for the first batch's teacher call: a heavy teacher runs each batch
        // once (on a 1000-row run at batch 1024 the probe was half of all inference).
        let probe = Some(Probe { batch: first, logits: probe_logits, num_classes, features: probe_features });
        Ok(Planned::Run(Box::new(Plan {
            probe,
            settings,
            source,
            teacher: Box::new(pass),
            width,
            column,
            num_classes,
            views,
            writer,
            skip,
            seen,
            lock,
        })))
    }
}

/// The sequence a teacher with outputs of rank 3 makes (`None` for any other teacher, which must not be
/// given sequence settings): its positions are the data's tokens, one value each.
fn sequence_of(
    pass: &Pass,
    settings: &PrecomputeSettings,
    row_shape: &[usize],
    source: &dyn Source,
) -> Result<Option<crate::store::Sequence>> {
    let o = &settings.teacher_options;
    let asked = settings.targets.is_some() || o.pad_id.is_some() || settings.vocab_file.is_some();
    let teacher = match pass {
        Pass::Models(e) if e.first().is_sequence() => e.first(),
        Pass::Models(e) => {
            if asked {
                return Err(Error::model(
                    e.first().path(),
                    "--targets, --pad-id and --vocab-file are for sequence teachers, whose output is [batch, \
                     positions, classes]; this one's is [batch, classes]",
                ));
            }
            return Ok(None);
        }
        Pass::Imported(_) => return Ok(None),
    };
    if let Pass::Models(e) = pass {
        if e.members().iter().any(|m| !m.is_sequence()) {
            return Err(Error::Config("an ensemble mixes sequence teachers with others".into()));
        }
    }
    let [length] = row_shape else {
        return Err(Error::model(
            teacher.path(),
            format!(
                "is a sequence teacher (output [batch, positions, classes]) fed rows of shape {row_shape:?}: \
                 sequence teachers take token ids, [batch, positions]"
            ),
        ));
    };
    let length = *length;
    if length > crate::store::sequence::MAX_POSITIONS {
        return Err(Error::data(
            &settings.data,
            format!("rows of {length} tokens: a sequence row has at most {}", crate::store::sequence::MAX_POSITIONS),
        ));
    }
    if source.element_type().is_float() {
        return Err(Error::model(
            teacher.path(),
            format!(
                "has an output of rank 3 ([batch, positions, classes]: a sequence teacher) but is fed the {:?} values \
                 of column '{}' of {}: a sequence teacher takes token ids, and a classifier's output is [batch, \
                 classes]",
                source.element_type(),
                source.input_name(),
                settings.data.display()
            ),
        ));
    }
    if settings.no_inputs {
        return Err(Error::Config(
            "--no-inputs: a sequence dataset stores each position's token (about a byte a token after \
             compression), which its students' windows read; leave --no-inputs out"
                .into(),
        ));
    }
    let targets = settings.targets.unwrap_or_default();
    if let (crate::store::Targets::Next, Some(label)) = (targets, source.label_column()) {
        return Err(Error::Config(format!(
            "--targets next labels each position with the next token; the data's label column '{label}' would be \
             ignored: leave it out of the data, or use --targets same for a tagger's labels"
        )));
    }
    let vocab_sha256 = match &settings.vocab_file {
        Some(p) => {
            let (file, _) = crate::util::open_regular(p, crate::util::Links::Follow)?;
            Some(crate::util::sha256_of(&file, p)?)
        }
        None => None,
    };
    Ok(Some(crate::store::Sequence {
        length,
        targets,
        pad_id: o.pad_id,
        mask_input: teacher.mask_input().map(str::to_string),
        vocab_sha256,
    }))
}

/// Checks a batch has the width of the rows before it.
pub(crate) fn check_width(batch: &Batch, width: usize, column: &str) -> Result<()> {
    if batch.width != width {
        return Err(Error::data(
            &batch.file,
            format!(
                "column '{column}', row {}: rows have {} values, earlier rows have {width}",
                batch.first_row, batch.width
            ),
        ));
    }
    Ok(())
}

fn member_info(
    m: &Teacher,
    file: &str,
    source_type: crate::data::ElementType,
    extra: &[(String, crate::data::ElementType, usize)],
) -> TeacherInfo {
    let input_type = m.input_element_type();
    let extra_inputs = m
        .extra_inputs()
        .into_iter()
        .zip(extra)
        .map(|((name, input_type, input_shape), (column, dtype, width))| crate::store::ExtraInputInfo {
            name,
            column: column.clone(),
            dtype: *dtype,
            width: *width,
            input_type,
            input_shape,
        })
        .collect();
    TeacherInfo {
        file: file.to_string(),
        sha256: m.sha256().to_string(),
        input_name: m.input_name().to_string(),
        input_shape: m.input_shape().to_vec(),
        input_type: (input_type != source_type).then_some(input_type),
        output_name: m.output_name().to_string(),
        output_kind: m.output_kind(),
        imported: None,
        extra_inputs,
    }
}

/// The models, or the imported outputs, a pass reads.
enum Pass {
    Models(Ensemble),
    Imported(Imported),
}

impl Infer for Pass {
    fn infer(&mut self, batch: &Batch) -> Result<(crate::teacher::Logits, usize)> {
        match self {
            Pass::Models(e) => e.infer(batch),
            Pass::Imported(i) => Infer::infer(i, batch),
        }
    }

    fn take_features(&mut self) -> Vec<Vec<f32>> {
        match self {
            Pass::Models(e) => e.take_features(),
            Pass::Imported(i) => i.take_features(),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Pass::Models(e) => Infer::path(e),
            Pass::Imported(i) => i.path(),
        }
    }
}

/// The manifest's teacher entry for imported outputs: the outputs file stands where the model would.
fn imported_info(i: &Imported, settings: &PrecomputeSettings, width: usize) -> TeacherInfo {
    let src = settings.import.as_ref();
    TeacherInfo {
        file: i.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        sha256: i.sha256().to_string(),
        input_name: String::new(),
        input_shape: vec![-1, width as i64],
        input_type: None,
        output_name: i.column().to_string(),
        output_kind: i.kind(),
        imported: Some(crate::store::ImportInfo {
            format: i.format().to_string(),
            column: i.column().to_string(),
            rows: i.rows() as u64,
            teacher_name: src.and_then(|s| s.teacher_name.clone()),
            teacher_id: src.and_then(|s| s.teacher_id.clone()),
        }),
        extra_inputs: Vec::new(),
    }
}
