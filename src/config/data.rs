//! Which columns of an input dataset hold what: `--input-column` / `--label-column` / `--id-column` /
//! `--skip-nonfinite`, or a pipeline's `[data]` keys of the same names.

use serde::{Deserialize, Serialize};

use crate::data::DataSpec;

/// One column name or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Columns {
    /// A list column (or one scalar column).
    One(String),
    /// Several scalar columns.
    Many(Vec<String>),
}

impl Columns {
    /// As a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Columns::One(c) => vec![c.clone()],
            Columns::Many(c) => c.clone(),
        }
    }
}

/// The columns of an input dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct DataConfig {
    /// Input column(s): one list column, or several scalar columns.
    pub input_column: Columns,
    /// Label column (`None`: `label` when present).
    pub label_column: Option<String>,
    /// Id column (`None`: `id` when present, else the row index).
    pub id_column: Option<String>,
    /// Skip (and count) rows whose input has NaN or infinite values instead of failing.
    pub skip_nonfinite: bool,
    /// The input array of `.npz` data.
    pub npz_key: Option<String>,
    /// The labels array of `.npz` data.
    pub npz_labels: Option<String>,
    /// How an image folder's images become rows (a pipeline's `[data]` resize, scale, mean, std,
    /// skip_bad_images, listed in its `DataSection`).
    #[serde(skip)]
    pub images: crate::data::images::ImageOptions,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            input_column: Columns::One(crate::store::columns::INPUT.into()),
            label_column: None,
            id_column: None,
            skip_nonfinite: false,
            npz_key: None,
            npz_labels: None,
            images: Default::default(),
        }
    }
}

impl DataConfig {
    /// The reader's spec (checked by [`DataSpec::validate`] when a source opens).
    pub fn spec(&self) -> DataSpec {
        DataSpec {
            input: self.input_column.to_vec(),
            label_column: self.label_column.clone(),
            id_column: self.id_column.clone(),
            skip_nonfinite: self.skip_nonfinite,
            labels_npy: None,
            npz_key: self.npz_key.clone(),
            npz_labels: self.npz_labels.clone(),
            images: self.images.clone(),
            image_prep: None,
            extra_inputs: Vec::new(),
        }
    }
}
