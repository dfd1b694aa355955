//! Which rows a read keeps: the transfer set's label exclusions (`train --exclude-labels`) and a
//! seeded validation split by id (`train --val-fraction`).

use serde::{Deserialize, Serialize};

/// A seeded split of a dataset's ids into training and validation rows. Whether an id is held out
/// depends only on the id, the seed and the fraction (never on file order, shards or the training
/// seed), so every student trained with the same split sees the same validation rows, and all views of
/// an id fall on the same side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// The share of ids held out for validation, in (0, 1).
    pub fraction: f64,
    /// The split's seed.
    pub seed: u64,
}

impl Holdout {
    /// Whether `id` is a validation row: splitmix64(id + seed * golden ratio) / 2^64 < fraction.
    pub fn is_val(&self, id: u64) -> bool {
        let x = splitmix64(id.wrapping_add(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64) < self.fraction
    }
}

/// One step of splitmix64 (Steele, Lea, Flood 2014): a bijective mix of the 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The side of a [`Holdout`] a read keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The rows trained on.
    Train,
    /// The held-out rows (the source rows only: view 0 of a dataset with views).
    Val,
}

/// Which rows a read keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowFilter {
    /// Rows with these hard labels are dropped (training side only: validation keeps every class).
    pub exclude_labels: Vec<i64>,
    /// A validation split, and the side kept.
    pub holdout: Option<(Holdout, Side)>,
}

impl RowFilter {
    /// Keeps every row.
    pub fn all() -> Self {
        RowFilter::default()
    }

    /// Drops the rows whose hard label is in `labels`.
    pub fn excluding(labels: &[i64]) -> Self {
        RowFilter { exclude_labels: labels.to_vec(), holdout: None }
    }

    /// Whether the filter keeps every row.
    pub fn keeps_all(&self) -> bool {
        self.exclude_labels.is_empty() && self.holdout.is_none()
    }

    /// Whether the row `id` with `label`, view `view` (0 without views), is kept.
    pub fn keeps(&self, id: u64, label: Option<i64>, view: u16) -> bool {
        match self.holdout {
            Some((h, Side::Val)) => view == 0 && h.is_val(id),
            Some((h, Side::Train)) => !h.is_val(id) && label.is_none_or(|y| !self.exclude_labels.contains(&y)),
            None => label.is_none_or(|y| !self.exclude_labels.contains(&y)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_holds_out_the_fraction_and_depends_only_on_id_and_seed() {
        let h = Holdout { fraction: 0.1, seed: 0 };
        let n = 100_000u64;
        let held = (0..n).filter(|&id| h.is_val(id)).count() as f64 / n as f64;
        // Binomial(1e5, 0.1): sd 0.00095; 5 sd.
        assert!((held - 0.1).abs() < 0.005, "{held}");
        let other = Holdout { seed: 1, ..h };
        let same = (0..n).filter(|&id| h.is_val(id) == other.is_val(id)).count() as f64 / n as f64;
        assert!(same < 0.85, "another seed gives another split ({same} agree)");
        let train = RowFilter { exclude_labels: vec![3], holdout: Some((h, Side::Train)) };
        let val = RowFilter { exclude_labels: vec![3], holdout: Some((h, Side::Val)) };
        for id in 0..1000 {
            // Each id is on exactly one side; validation keeps excluded classes and only view 0.
            assert_ne!(train.keeps(id, Some(1), 0), val.keeps(id, Some(1), 0));
            assert!(!train.keeps(id, Some(3), 0));
            assert_eq!(val.keeps(id, Some(3), 0), h.is_val(id));
            assert!(!val.keeps(id, Some(1), 2));
        }
    }
}
