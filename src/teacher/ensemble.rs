//! Several teachers run on the same rows, their outputs combined.

use std::path::PathBuf;

use super::{Teacher, TeacherOptions};
use crate::data::Batch;
use crate::error::{Error, Result};

/// How an ensemble combines its members' outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Combine {
    /// The mean of the members' logits.
    #[default]
    MeanLogits,
    /// The log of the mean of the members' probabilities (softmax at T = 1).
    MeanProbs,
}

/// The sha256 identifying teachers with these model hashes: the model's own for one, else a hash of the
/// combination and every member's sha256 in order.
pub fn ensemble_sha256(shas: &[String], combine: Combine) -> String {
    if shas.len() == 1 {
        return shas[0].clone();
    }
    let name = match combine {
        Combine::MeanLogits => "mean-logits",
        Combine::MeanProbs => "mean-probs",
    };
    let mut text = format!("softlabel-ensemble {name}\n");
    for s in shas {
        text.push_str(s);
        text.push('\n');
    }
    crate::util::sha256_hex(text.as_bytes())
}

/// One or more teachers run on the same rows; their outputs combined per [`Combine`].
#[derive(Debug)]
pub struct Ensemble {
    members: Vec<Teacher>,
    row_shapes: Vec<Vec<usize>>,
    combine: Combine,
}

impl Ensemble {
    /// Loads every model.
    pub fn load(paths: &[PathBuf], options: &TeacherOptions, combine: Combine) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::Config("at least one --teacher is needed".into()));
        }
        let members = paths.iter().map(|p| Teacher::load(p, options)).collect::<Result<Vec<_>>>()?;
        Ok(Ensemble { members, row_shapes: Vec::new(), combine })
    }

    /// The members.
    pub fn members(&self) -> &[Teacher] {
        &self.members
    }

    /// How outputs are combined.
    pub fn combine(&self) -> Combine {
        self.combine
    }

    /// The first member (named in errors that concern the whole ensemble).
    pub fn first(&self) -> &Teacher {
        &self.members[0]
    }

    /// The first member, to take its features (features are read from one teacher).
    pub fn first_mut(&mut self) -> &mut Teacher {
        &mut self.members[0]
    }

    /// Resolves every member's per-row shape for rows of `width` values; returns the first member's.
    pub fn prepare(&mut self, width: usize, column: &str) -> Result<Vec<usize>> {
        self.row_shapes = self.members.iter().map(|m| m.row_shape(width, column)).collect::<Result<_>>()?;
        Ok(self.row_shapes[0].clone())
    }

    /// sha256 identifying the teacher: the model's, or for an ensemble a hash of the combination and
    /// every member's sha256 in order.
    pub fn sha256(&self) -> String {
        let shas: Vec<String> = self.members.iter().map(|m| m.sha256().to_string()).collect();
        ensemble_sha256(&shas, self.combine)
    }

    /// Runs every member and combines their logits; row-major `[rows, classes]`.
    pub fn run(&mut self, batch: &Batch) -> Result<(super::Logits, usize)> {
        let n = self.members.len();
        if n == 1 {
            return self.members[0].run(batch, &self.row_shapes[0]);
        }
        let mut combined: Vec<f64> = Vec::new();
        let mut classes = 0;
        for (i, member) in self.members.iter_mut().enumerate() {
            let (logits, k) = member.run(batch, &self.row_shapes[i])?;
            if i == 0 {
                classes = k;
                combined = vec![0.0; logits.len()];
            } else if k != classes {
                return Err(Error::model(
                    member.path(),
                    format!("has {k} classes, the first teacher {classes}: ensemble members must agree"),
                ));
            }
            match self.combine {
                Combine::MeanLogits => {
                    combined.iter_mut().zip(logits.iter()).for_each(|(c, &z)| *c += f64::from(z) / n as f64)
                }
                Combine::MeanProbs => {
                    let mut p = vec![0f32; k];
                    for (row, out) in logits.chunks_exact(k).zip(combined.chunks_exact_mut(k)) {
                        crate::soften::softmax_t(row, 1.0, &mut p);
                        out.iter_mut().zip(&p).for_each(|(c, &q)| *c += f64::from(q) / n as f64);
                    }
                }
            }
        }
        let out: Vec<f32> = match self.combine {
            Combine::MeanLogits => combined.into_iter().map(|v| v as f32).collect(),
            Combine::MeanProbs => combined.into_iter().map(|v| v.ln() as f32).collect(),
        };
        Ok((out.into(), classes))
    }
}
