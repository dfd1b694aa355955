//! The sgemm ceiling for student training: `softlabel::util::gemm` (what the trainer calls) on exactly
//! the matrix products of one training step of a `dims` MLP, each of `threads` workers on its share of
//! the batch, as the trainer splits it; and ndarray's `general_mat_mul` (matrixmultiply) on the same
//! products, alternated with it. Prints one JSON line with GFLOP/s (medians of REPS).
//!
//!     cargo bench --bench sgemm -- DIMS BATCH THREADS REPS      e.g. 784,800,800,10 128 1 5

use std::time::Instant;

use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use rayon::prelude::*;

/// One product: C[m, n] = A[m, k] B[k, n], with A or B transposed views as in the trainer.
struct Product {
    a: Array2<f32>,
    b: Array2<f32>,
    c: Array2<f32>,
    transpose_a: bool,
    transpose_b: bool,
}

impl Product {
    fn new(m: usize, k: usize, n: usize, transpose_a: bool, transpose_b: bool) -> Self {
        let fill = |r, c| Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 3) % 13) as f32 * 0.01);
        Product {
            a: if transpose_a { fill(k, m) } else { fill(m, k) },
            b: if transpose_b { fill(n, k) } else { fill(k, n) },
            c: Array2::zeros((m, n)),
            transpose_a,
            transpose_b,
        }
    }
    fn flops(&self) -> f64 {
        let k = if self.transpose_a { self.a.nrows() } else { self.a.ncols() };
        2.0 * (self.c.nrows() * self.c.ncols() * k) as f64
    }
    fn run(&mut self, ours: bool) {
        let a = if self.transpose_a { self.a.t() } else { self.a.view() };
        let b = if self.transpose_b { self.b.t() } else { self.b.view() };
        if ours {
            softlabel::util::gemm(1.0, &a, &b, 0.0, &mut self.c);
        } else {
            general_mat_mul(1.0, &a, &b, 0.0, &mut self.c);
        }
    }
}

/// The products of one step for `m` rows: forward, weight gradients, input gradients (not for layer 0).
fn step_products(dims: &[usize], m: usize) -> Vec<Product> {
    let mut p = Vec::new();
    for l in 0..dims.len() - 1 {
        let (i, o) = (dims[l], dims[l + 1]);
        p.push(Product::new(m, i, o, false, false)); // x W
        p.push(Product::new(i, m, o, true, false)); // x^T delta
        if l > 0 {
            p.push(Product::new(m, o, i, false, true)); // delta W^T
        }
    }
    p
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [dims, batch, threads, reps] = &args[..] else {
        anyhow::bail!("usage: sgemm DIMS BATCH THREADS REPS");
    };
    let dims: Vec<usize> = dims.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let (batch, threads, reps): (usize, usize, usize) = (batch.parse()?, threads.parse()?, reps.parse()?);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let chunk = batch.div_ceil(threads);
    let mut workers: Vec<Vec<Product>> = (0..threads).map(|_| step_products(&dims, chunk)).collect();
    let flops_per_step: f64 = workers.iter().flatten().map(Product::flops).sum();
    let steps = 200;
    let (mut ours, mut ndarray) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        for (rates, kernel) in [(&mut ours, true), (&mut ndarray, false)] {
            let start = Instant::now();
            pool.install(|| {
                for _ in 0..steps {
                    workers.par_iter_mut().for_each(|w| w.iter_mut().for_each(|p| p.run(kernel)));
                }
            });
            rates.push(flops_per_step * steps as f64 / start.elapsed().as_secs_f64() / 1e9);
        }
    }
    let median = |r: &mut Vec<f64>| {
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    println!(
        "{}",
        serde_json::json!({"gflops_median": median(&mut ours), "gflops": ours,
            "ndarray_gflops_median": median(&mut ndarray), "ndarray_gflops": ndarray, "threads": threads})
    );
    Ok(())
}
