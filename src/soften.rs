//! Temperature softmax and friends: pure functions over one row of logits.
//!
//! All reductions run in f64, so a softened probability is the correctly rounded f32 of the exact value
//! for the class counts softlabel meets (the stored `soft` column matches a float64 numpy recomputation
//! to ~1e-7).

/// log(sum_j exp(z_j / t)), computed stably (max subtracted first), in float64: the terms by
/// [`exp_nonpositive`] (vectorised, within 2 ulp of libm's `exp`), summed in 8 lanes then in order, so a
/// 32,000-class row costs microseconds, not the 190 us of one libm call per class.
pub fn logsumexp_t(logits: &[f32], t: f32) -> f64 {
    let t = f64::from(t);
    // max(z) / t is max(z / t): division by t > 0 keeps the order.
    let max = f64::from(logits.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z))) / t;
    if !max.is_finite() {
        return max;
    }
    max + exp_sum(logits, t, max).ln()
}

/// sum_j exp(z_j / t - max), in the widest vectors this CPU has: the same operations (no fused
/// multiply-adds) in the same order on every path, so every machine gets the same bits.
fn exp_sum(logits: &[f32], t: f64, max: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            return unsafe { exp_sum_avx512(logits, t, max) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { exp_sum_avx2(logits, t, max) };
        }
    }
    exp_sum_lanes(logits, t, max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_sum_avx512(logits: &[f32], t: f64, max: f64) -> f64 {
    exp_sum_lanes(logits, t, max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_sum_avx2(logits: &[f32], t: f64, max: f64) -> f64 {
    exp_sum_lanes(logits, t, max)
}

/// The sum in 8 lanes (each lane's terms in order), then the lanes and the tail in order.
#[inline(always)]
fn exp_sum_lanes(logits: &[f32], t: f64, max: f64) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0f64; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (acc, &z) in lanes.iter_mut().zip(c) {
            *acc += exp_nonpositive(f64::from(z) / t - max);
        }
    }
    let mut sum: f64 = lanes.iter().sum();
    for &z in tail {
        sum += exp_nonpositive(f64::from(z) / t - max);
    }
    sum
}

/// exp(x) for x <= 0 in float64 without branches, so loops over it vectorise: x = n ln 2 + r with
/// |r| <= ln 2 / 2, exp(r) by its Taylor series to degree 13 (truncation below 2e-16 relative), times
/// 2^n from the exponent bits. Below -708 (exp under 2^-1021, nothing beside a term of 1) it gives 0.
#[inline(always)]
pub fn exp_nonpositive(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding and subtracting 1.5 * 2^52 rounds to the nearest integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let keep = x >= -708.0;
    let xc = if keep { x } else { -708.0 };
    let v = xc * LOG2E + ROUND;
    let n = v - ROUND;
    // n as an integer from v's low mantissa bits (no float-to-integer conversion, which SSE2 and AVX2
    // lack for 64-bit lanes).
    let ni = v.to_bits().wrapping_sub(ROUND.to_bits());
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let scale = f64::from_bits(ni.wrapping_add(1023) << 52);
    if keep {
        p * scale
    } else {
        0.0
    }
}

/// Writes softmax(logits / t) into `out`: each exp(z / t - lse) in float64 by [`exp_nonpositive`]
/// (vectorised like [`logsumexp_t`]; a 1000-class row no longer makes 1000 libm calls), rounded to f32.
pub fn softmax_t(logits: &[f32], t: f32, out: &mut [f32]) {
    debug_assert_eq!(logits.len(), out.len());
    let lse = logsumexp_t(logits, t);
    let t = f64::from(t);
    if !lse.is_finite() {
        // A row of -inf, +inf or NaN (refused where rows come from a teacher): libm's answer.
        for (o, &z) in out.iter_mut().zip(logits) {
            *o = (f64::from(z) / t - lse).exp() as f32;
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            return unsafe { exp_shifted_avx512(logits, t, lse, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { exp_shifted_avx2(logits, t, lse, out) };
        }
    }
    exp_shifted(logits, t, lse, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_shifted_avx512(logits: &[f32], t: f64, lse: f64, out: &mut [f32]) {
    exp_shifted(logits, t, lse, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_shifted_avx2(logits: &[f32], t: f64, lse: f64, out: &mut [f32]) {
    exp_shifted(logits, t, lse, out)
}

/// out = exp(z / t - lse), element by element (the same operations on every path).
#[inline(always)]
fn exp_shifted(logits: &[f32], t: f64, lse: f64, out: &mut [f32]) {
    for (o, &z) in out.iter_mut().zip(logits) {
        *o = exp_nonpositive(f64::from(z) / t - lse) as f32;
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

/// The reason a row of teacher logits is refused, if it is: its first NaN or +inf value, or -inf when
/// every value is -inf (no class has any probability). -inf alone is valid: the log of a probability
/// of 0. Branch-free folds first (vectorised); the value is looked for only on failure.
pub fn invalid_logit(z: &[f32]) -> Option<f32> {
    let any_bad = z.iter().fold(false, |a, &v| a | v.is_nan() | (v == f32::INFINITY));
    let all_neg_inf = z.iter().fold(true, |a, &v| a & (v == f32::NEG_INFINITY));
    match (any_bad, all_neg_inf) {
        (true, _) => z.iter().copied().find(|v| v.is_nan() || *v == f32::INFINITY),
        (false, true) => Some(f32::NEG_INFINITY),
        (false, false) => None,
    }
}

/// Indices of the `k` largest values, largest first (ties: lower index first). NaN sorts last.
///
/// One pass that keeps the best `k` so far in order: a value that does not beat the current k-th is
/// rejected with one comparison, so a 32,000-word vocabulary's top 32 costs about one compare a class
/// (sorting the whole row cost 2.4 ms a row there).
pub fn top_k(row: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(row.len());
    if k == 0 {
        return Vec::new();
    }
    // Whether class a ranks before class b: larger first, NaN last, lower index on ties.
    let before = |a: u32, b: u32| {
        let (x, y) = (row[a as usize], row[b as usize]);
        match (x.is_nan(), y.is_nan()) {
            (false, true) => true,
            (true, false) => false,
            (true, true) => a < b,
            (false, false) => x > y || (x == y && a < b),
        }
    };
    let mut best: Vec<u32> = Vec::with_capacity(k + 1);
    // The k-th value so far, once k are held: only a larger value can enter (an equal one has a higher
    // index; NaN never beats a number). While the k-th is NaN the full comparison decides.
    let mut kth = f32::NAN;
    const BLOCK: usize = 16;
    for (b, block) in row.chunks(BLOCK).enumerate() {
        // A whole block below the k-th is skipped with one vectorised comparison.
        if !kth.is_nan() && !block.iter().fold(false, |any, &x| any | (x > kth)) {
            continue;
        }
        for (j, &x) in block.iter().enumerate() {
            let i = b * BLOCK + j;
            if !kth.is_nan() && x.partial_cmp(&kth) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            let i = i as u32;
            if best.len() == k && !before(i, best[k - 1]) {
                continue;
            }
            let at = best.partition_point(|&b| before(b, i));
            best.insert(at, i);
            best.truncate(k);
            if best.len() == k {
                kth = row[best[k - 1] as usize];
            }
        }
    }
    best
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
    fn the_vectorised_softmax_rounds_as_libm_does() {
        // Against exp(z / t - lse) by libm, rounded to f32: the same f32 (or, at a rounding boundary,
        // the next one) for 1000-class rows spanning 60 logit units at several temperatures.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let (mut same, mut total) = (0, 0);
        for &t in &[0.5f32, 1.0, 4.0, 20.0] {
            let z: Vec<f32> = (0..1000)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 60_000) as f32 / 1000.0 - 30.0
                })
                .collect();
            let mut p = vec![0f32; z.len()];
            softmax_t(&z, t, &mut p);
            let lse = logsumexp_t(&z, t);
            for (&zi, &pi) in z.iter().zip(&p) {
                let want = (f64::from(zi) / f64::from(t) - lse).exp() as f32;
                assert!(pi.to_bits().abs_diff(want.to_bits()) <= 1, "{pi} vs {want} at t {t}");
                same += usize::from(pi == want);
                total += 1;
            }
        }
        assert!(same * 1000 >= total * 999, "{same} of {total} equal libm's");
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
    fn the_vectorised_exp_is_within_2_ulp_of_libm_and_logsumexp_of_a_naive_sum() {
        let mut x = 0.0f64;
        while x > -708.0 {
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!((got - want).abs() <= 2.0 * f64::EPSILON * want, "exp({x}) = {got}, libm {want}");
            x -= 0.0137;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-800.0), 0.0);
        let z: Vec<f32> = (0..32_003).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 9.0).collect();
        for t in [0.5f32, 1.0, 4.0] {
            let tf = f64::from(t);
            let max = z.iter().map(|&v| f64::from(v) / tf).fold(f64::NEG_INFINITY, f64::max);
            let naive = max + z.iter().map(|&v| (f64::from(v) / tf - max).exp()).sum::<f64>().ln();
            assert!((logsumexp_t(&z, t) - naive).abs() < 1e-12, "T {t}");
        }
        assert_eq!(logsumexp_t(&[f32::NEG_INFINITY, 0.0], 1.0), 0.0);
    }

    #[test]
    fn invalid_logits_are_nan_plus_inf_or_a_row_of_minus_inf() {
        assert_eq!(invalid_logit(&[0.0, f32::NEG_INFINITY, 2.0]), None);
        assert_eq!(invalid_logit(&[0.0, f32::INFINITY, f32::NAN]), Some(f32::INFINITY));
        assert!(invalid_logit(&[f32::NEG_INFINITY, f32::NAN]).is_some_and(f32::is_nan));
        assert_eq!(invalid_logit(&[f32::NEG_INFINITY; 3]), Some(f32::NEG_INFINITY));
    }

    #[test]
    fn top_k_is_sorted_descending_and_a_prefix_of_the_full_order() {
        let z = [0.5f32, 3.0, -1.0, 3.0, 2.0];
        assert_eq!(top_k(&z, 3), vec![1, 3, 4]);
        assert_eq!(top_k(&z, 5), vec![1, 3, 4, 0, 2]);
        assert_eq!(top_k(&z, 1), vec![1]);
        assert_eq!(top_k(&z, 9), vec![1, 3, 4, 0, 2]);
        // Equal to a full sort (the definition) on rows with ties, NaN and -inf.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for n in [1usize, 7, 100, 3000] {
            let row: Vec<f32> = (0..n)
                .map(|_| {
                    rng = crate::util::splitmix64(rng);
                    match rng % 50 {
                        0 => f32::NAN,
                        1 => f32::NEG_INFINITY,
                        r => (r % 13) as f32 - 6.0,
                    }
                })
                .collect();
            let mut sorted: Vec<u32> = (0..n as u32).collect();
            let key = |i: &u32| row[*i as usize];
            sorted.sort_by(|a, b| {
                key(b).partial_cmp(&key(a)).unwrap_or_else(|| key(a).is_nan().cmp(&key(b).is_nan())).then(a.cmp(b))
            });
            for k in [1, 5, 32, n] {
                assert_eq!(top_k(&row, k), sorted[..k.min(n)].to_vec(), "n {n}, k {k}");
            }
        }
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
