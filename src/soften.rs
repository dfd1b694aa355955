//! Temperature softmax and friends: pure functions over one row of logits.
//!
//! All reductions run in f64, so a softened probability is the correctly rounded f32 of the exact value
//! for the class counts softlabel meets (the stored `soft` column matches a float64 numpy recomputation
//! to ~1e-7).

/// log(sum_j exp(z_j / t)), computed stably (max subtracted first).
pub fn logsumexp_t(logits: &[f32], t: f32) -> f64 {
    let t = f64::from(t);
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(f64::from(z) / t));
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logits.iter().map(|&z| (f64::from(z) / t - max).exp()).sum();
    max + sum.ln()
}

/// Writes softmax(logits / t) into `out`.
pub fn softmax_t(logits: &[f32], t: f32, out: &mut [f32]) {
    debug_assert_eq!(logits.len(), out.len());
    let lse = logsumexp_t(logits, t);
    let t = f64::from(t);
    for (o, &z) in out.iter_mut().zip(logits) {
        *o = (f64::from(z) / t - lse).exp() as f32;
    }
}

/// Writes log_softmax(logits / t) into `out`.
pub fn log_softmax_t(logits: &[f32], t: f32, out: &mut [f32]) {
    debug_assert_eq!(logits.len(), out.len());
    let lse = logsumexp_t(logits, t);
    let t = f64::from(t);
    for (o, &z) in out.iter_mut().zip(logits) {
        *o = (f64::from(z) / t - lse) as f32;
    }
}

/// The spatial attention map of a map `x` = `[channels, positions]` (CHW, flattened): per position the
/// mean over channels of the squared values (Zagoruyko and Komodakis 2017, p = 2), in f64, unnormalised.
/// What `precompute --feature-pool attention` stores and `train --at` compares.
pub fn attention_map(x: &[f32], channels: usize) -> Vec<f64> {
    let channels = channels.max(1);
    let positions = x.len() / channels;
    let mut q = vec![0f64; positions];
    for c in 0..channels {
        for (p, o) in q.iter_mut().enumerate() {
            *o += f64::from(x[c * positions + p]).powi(2);
        }
    }
    q.iter_mut().for_each(|v| *v /= channels as f64);
    q
}

/// Index of the largest value (the first one on ties); `None` for an empty row.
pub fn argmax(row: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        match best {
            Some((_, b)) if v.partial_cmp(&b) != Some(std::cmp::Ordering::Greater) => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

/// KL(p || q) in nats for p = softmax(p_logits / t), q = softmax(q_logits / t).
pub fn kl_t(p_logits: &[f32], q_logits: &[f32], t: f32) -> f64 {
    let lp = logsumexp_t(p_logits, t);
    let lq = logsumexp_t(q_logits, t);
    let t = f64::from(t);
    p_logits
        .iter()
        .zip(q_logits)
        .map(|(&a, &b)| {
            let log_p = f64::from(a) / t - lp;
            let log_q = f64::from(b) / t - lq;
            let p = log_p.exp();
            if p == 0.0 {
                0.0
            } else {
                p * (log_p - log_q)
            }
        })
        .sum()
}

/// Indices of the `k` largest values, largest first (ties: lower index first). NaN sorts last.
pub fn top_k(row: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let key = |i: &u32| row[*i as usize];
    idx.sort_by(|a, b| {
        key(b).partial_cmp(&key(a)).unwrap_or_else(|| key(a).is_nan().cmp(&key(b).is_nan())).then(a.cmp(b))
    });
    idx.truncate(k);
    idx
}

/// `k` classes drawn with replacement from softmax(logits / t), ascending. Reproducible: the draws
/// depend only on (seed, id), not on batching, sharding or resumption.
pub fn sample_classes(logits: &[f32], t: f32, k: usize, seed: u64, id: u64) -> Vec<u32> {
    let lse = logsumexp_t(logits, t);
    let t = f64::from(t);
    let mut cdf = Vec::with_capacity(logits.len());
    let mut acc = 0f64;
    for &z in logits {
        acc += (f64::from(z) / t - lse).exp();
        cdf.push(acc);
    }
    let total = acc;
    let mut state = crate::util::splitmix64(seed ^ crate::util::splitmix64(id));
    let mut draws: Vec<u32> = (0..k)
        .map(|_| {
            state = crate::util::splitmix64(state);
            // 53 random bits -> uniform in [0, total).
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 * total;
            cdf.partition_point(|&c| c <= u).min(logits.len() - 1) as u32
        })
        .collect();
    draws.sort_unstable();
    draws
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_is_shift_invariant() {
        let z = [130.0f32, -5.0, 0.5, 42.0, 129.0];
        for t in [0.5f32, 1.0, 4.0, 20.0] {
            let mut p = [0f32; 5];
            softmax_t(&z, t, &mut p);
            let s: f32 = p.iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "t={t}: sum {s}");
            let shifted: Vec<f32> = z.iter().map(|v| v - 1000.0).collect();
            let mut q = [0f32; 5];
            softmax_t(&shifted, t, &mut q);
            for (a, b) in p.iter().zip(&q) {
                assert!((a - b).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn softmax_matches_numpy_reference() {
        // numpy: z = np.array([1., 2., 3.]); e = np.exp(z / 2); e / e.sum()
        // -> [0.18632372, 0.30719589, 0.50648039]
        let mut p = [0f32; 3];
        softmax_t(&[1.0, 2.0, 3.0], 2.0, &mut p);
        for (a, b) in p.iter().zip([0.18632372f64, 0.30719589, 0.50648039]) {
            assert!((f64::from(*a) - b).abs() < 1e-7, "{a} vs {b}");
        }
    }

    #[test]
    fn kl_is_zero_for_equal_and_positive_otherwise() {
        let a = [1.0f32, -2.0, 3.5];
        let b = [0.0f32, 1.0, 2.0];
        assert!(kl_t(&a, &a, 3.0).abs() < 1e-12);
        assert!(kl_t(&a, &b, 1.0) > 0.0);
        assert!(kl_t(&b, &a, 7.0) > 0.0);
    }

    #[test]
    fn argmax_first_on_ties_and_ignores_nan_start() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some(1));
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn top_k_is_sorted_descending_and_a_prefix_of_the_full_order() {
        let z = [0.5f32, 3.0, -1.0, 3.0, 2.0];
        assert_eq!(top_k(&z, 3), vec![1, 3, 4]);
        assert_eq!(top_k(&z, 5), vec![1, 3, 4, 0, 2]);
        assert_eq!(top_k(&z, 1), vec![1]);
    }

    #[test]
    fn sampling_is_reproducible_and_follows_the_distribution() {
        let z = [2.0f32, 0.0, -1.0, 1.0];
        assert_eq!(sample_classes(&z, 2.0, 16, 7, 42), sample_classes(&z, 2.0, 16, 7, 42));
        assert_ne!(sample_classes(&z, 2.0, 16, 7, 42), sample_classes(&z, 2.0, 16, 7, 43));
        // Frequencies over many ids match softmax(z / 2) (numpy: [0.4519, 0.1662, 0.1008, 0.2741]) within 0.01.
        let mut counts = [0usize; 4];
        for id in 0..20_000u64 {
            for c in sample_classes(&z, 2.0, 5, 1, id) {
                counts[c as usize] += 1;
            }
        }
        let mut p = [0f32; 4];
        softmax_t(&z, 2.0, &mut p);
        for (c, q) in counts.iter().zip(p) {
            let f = *c as f32 / 100_000.0;
            assert!((f - q).abs() < 0.01, "{f} vs {q}");
        }
    }
}
