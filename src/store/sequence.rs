//! Sequence datasets (schema 2.12): a teacher whose outputs have rank 3, `[batch, positions, classes]`,
//! stored one row per (id, unmasked position); and the windows of tokens a student reads around each
//! stored position, rebuilt from the stored rows of the same id.

use ndarray::Array2;

use super::TeacherOutputs;
use crate::error::{Error, Result};

/// The most positions a sequence row may have (positions are keyed as 16 bits beside the id, as views
/// are).
pub const MAX_POSITIONS: usize = 1 << 16;
/// The widest window of tokens a student reads around a position.
pub const MAX_WINDOW: usize = 1024;

/// Which token a position's label (and the teacher's output there) is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    /// A tagger: the output at position t is about token t; the label is the source's tag at t.
    #[default]
    Same,
    /// A language model: the output at position t predicts token t + 1; the label is that token (null
    /// at the last unmasked position).
    Next,
}

impl std::fmt::Display for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Targets::Same => "same",
            Targets::Next => "next",
        })
    }
}

/// How a sequence dataset was made (the manifest's `sequence`, the `softlabel.sequence` key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    /// Positions per source row (the teacher's second output dimension).
    pub length: usize,
    /// What each position's output and label are about.
    pub targets: Targets,
    /// The padding token: positions holding it are masked (not stored). `None`: every position is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_id: Option<i64>,
    /// The teacher input fed `1` where a token is and `0` at padding (an attention mask), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_input: Option<String>,
    /// sha256 of the tokenizer or vocabulary file the token ids come from, as the user gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_sha256: Option<String>,
}

impl Sequence {
    /// The field checks of a manifest's `sequence` against its stored input width.
    pub fn validate(&self, input_width: usize) -> std::result::Result<(), String> {
        if self.length == 0 || self.length > MAX_POSITIONS {
            return Err(format!("length {} is not in 1..={MAX_POSITIONS}", self.length));
        }
        if input_width != 1 {
            return Err(format!("the stored input has {input_width} values a position; sequences of tokens store 1"));
        }
        if self.mask_input.is_some() && self.pad_id.is_none() {
            return Err("mask_input without pad_id: the mask is derived from the padding token".into());
        }
        if let Some(h) = &self.vocab_sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("vocab_sha256 '{h}' is not 64 hex digits"));
            }
        }
        Ok(())
    }

    /// The id a student's window reads outside the sequence: the dataset's pad id, else the student's
    /// (`student_pad`), which its embedding masks.
    pub fn fill(&self, student_pad: Option<u32>) -> Result<f32> {
        match (self.pad_id, student_pad) {
            (Some(p), _) => Ok(p as f32),
            (None, Some(p)) => Ok(p as f32),
            (None, None) => Err(Error::Config(
                "the sequence dataset records no pad id, and a window at a sequence's edge reads positions \
                 outside it: give the student --pad-id N (an id it masks)"
                    .into(),
            )),
        }
    }

    /// The `w` of a student reading `width` tokens around a position (`None`: no window has that width).
    pub fn window_of_width(&self, width: usize) -> Option<usize> {
        match self.targets {
            Targets::Same => (width % 2 == 1).then_some(width / 2),
            Targets::Next => width.checked_sub(1),
        }
    }

    /// The positions a student at position t reads: `-w..=w` for a tagger, `-w..=0` (causal) for a
    /// language model, whose output at t must not see token t + 1.
    pub fn window_offsets(&self, w: usize) -> std::ops::RangeInclusive<i64> {
        let w = w as i64;
        match self.targets {
            Targets::Same => -w..=w,
            Targets::Next => -w..=0,
        }
    }
}

/// Replaces the stored one-token inputs of a sequence dataset's rows by windows of tokens around each
/// row's position, taken from the rows of the same id (the rows of an id are contiguous, positions
/// ascending: checked as they were read). Positions outside the sequence or masked read `fill` (the
/// pad id, or an id the student masks). Rows must be unfiltered within an id (no label exclusions).
pub fn windows(data: &mut TeacherOutputs, seq: &Sequence, w: usize, fill: f32) -> Result<()> {
    let positions =
        data.positions.as_ref().ok_or_else(|| Error::Internal("a sequence dataset's rows without positions".into()))?;
    if data.inputs.ncols() != 1 {
        return Err(Error::Internal(format!("sequence rows hold {} input values, not 1 token", data.inputs.ncols())));
    }
    if w > MAX_WINDOW {
        return Err(Error::Config(format!("--window {w} is over {MAX_WINDOW}")));
    }
    let offsets: Vec<i64> = seq.window_offsets(w).collect();
    let n = data.len();
    let mut out = Array2::<f32>::from_elem((n, offsets.len()), fill);
    let mut token = vec![fill; seq.length];
    let mut start = 0;
    while start < n {
        let id = data.ids[start];
        let end = start + data.ids[start..].iter().position(|&i| i != id).unwrap_or(n - start);
        for (r, &p) in positions.iter().enumerate().take(end).skip(start) {
            token[p as usize] = data.inputs[[r, 0]];
        }
        for (r, &p) in positions.iter().enumerate().take(end).skip(start) {
            let p = p as i64;
            for (o, &d) in out.row_mut(r).iter_mut().zip(&offsets) {
                if let Some(&t) = usize::try_from(p + d).ok().and_then(|q| token.get(q)) {
                    *o = t;
                }
            }
        }
        for &p in &positions[start..end] {
            token[p as usize] = fill;
        }
        start = end;
    }
    data.inputs = out;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outputs;

    fn rows(ids: &[u64], positions: &[u32], tokens: &[f32]) -> TeacherOutputs {
        TeacherOutputs {
            ids: ids.to_vec(),
            labels: vec![None; ids.len()],
            inputs: Array2::from_shape_vec((ids.len(), 1), tokens.to_vec()).unwrap(),
            outputs: Outputs::Dense { logits: Array2::zeros((ids.len(), 2)) },
            views: None,
            positions: Some(positions.to_vec()),
        }
    }

    #[test]
    fn windows_read_the_same_id_only_and_fill_gaps_and_edges() {
        let seq = Sequence { length: 6, targets: Targets::Same, pad_id: Some(0), mask_input: None, vocab_sha256: None };
        // id 7: tokens at positions 0, 1, 3 (2 masked); id 9: positions 0, 1.
        let mut d = rows(&[7, 7, 7, 9, 9], &[0, 1, 3, 0, 1], &[11., 12., 14., 21., 22.]);
        windows(&mut d, &seq, 1, 0.0).unwrap();
        let want = [[0., 11., 12.], [11., 12., 0.], [0., 14., 0.], [0., 21., 22.], [21., 22., 0.]];
        for (r, w) in want.iter().enumerate() {
            assert_eq!(d.inputs.row(r).to_vec(), w.to_vec(), "row {r}");
        }
        // A language model's window is causal: position t never reads t + 1.
        let lm = Sequence { targets: Targets::Next, ..seq };
        let mut d = rows(&[7, 7, 7], &[0, 1, 2], &[11., 12., 13.]);
        windows(&mut d, &lm, 2, -1.0).unwrap();
        assert_eq!(d.inputs.row(2).to_vec(), vec![11., 12., 13.]);
        assert_eq!(d.inputs.row(0).to_vec(), vec![-1., -1., 11.]);
    }
}
