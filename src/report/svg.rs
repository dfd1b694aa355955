//! The report's plots as SVG: training curves, the reliability diagram, the teacher's softmax at
//! several temperatures.

use std::fmt::Write as _;

use ndarray::Array2;

use super::Bin;
use crate::eval::ECE_BINS;
use crate::soften::softmax_t;
use crate::store::TeacherOutputs;
use crate::student::EpochLog;

const W: f64 = 640.0;
const H: f64 = 400.0;
const M: f64 = 50.0;

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        W / 2.0
    )
}

/// Axes with 5 ticks on y; on x, 5 ticks (`Some((x0, x1))`), integer ticks, or none.
fn axes(s: &mut String, x: XTicks, y0: f64, y1: f64, xl: &str, yl: &str) {
    let (l, r, t, b) = (M, W - M, M, H - M);
    let _ = writeln!(s, "<line x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\" stroke=\"black\"/>");
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let y = b - f * (b - t);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            l - 5.0,
            y + 4.0,
            fmt_tick(y0 + f * (y1 - y0))
        );
    }
    let xs: Vec<(f64, String)> = match x {
        XTicks::Range(x0, x1) => {
            (0..=4).map(|i| f64::from(i) / 4.0).map(|f| (l + f * (r - l), fmt_tick(x0 + f * (x1 - x0)))).collect()
        }
        XTicks::Integers(n) => {
            let step = n.div_ceil(10).max(1);
            (1..=n)
                .filter(|i| (i - 1) % step == 0 || *i == n)
                .map(|i| (scale(i as f64, 1.0, (n as f64).max(2.0), l, r), i.to_string()))
                .collect()
        }
        XTicks::None => Vec::new(),
    };
    for (x, label) in xs {
        let _ = writeln!(s, "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>", b + 15.0);
    }
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xl}</text>", W / 2.0, H - 12.0);
    let _ = writeln!(
        s,
        "<text x=\"14\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {})\">{yl}</text>",
        H / 2.0,
        H / 2.0
    );
}

#[derive(Clone, Copy)]
enum XTicks {
    Range(f64, f64),
    Integers(usize),
    None,
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn scale(v: f64, lo: f64, hi: f64, a: f64, b: f64) -> f64 {
    if hi > lo {
        a + (v - lo) / (hi - lo) * (b - a)
    } else {
        a
    }
}

fn polyline(s: &mut String, pts: &[(f64, f64)], color: &str) {
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(s, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>", p.join(" "));
    for (x, y) in pts {
        let _ = writeln!(s, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>");
    }
}

/// A legend in one row under the title.
fn legend(s: &mut String, items: &[(&str, &str)]) {
    for (i, (name, color)) in items.iter().enumerate() {
        let x = M + 10.0 + 130.0 * i as f64;
        let _ = writeln!(s, "<rect x=\"{x}\" y=\"28\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"38\">{name}</text>", x + 16.0);
    }
}

/// Training loss and validation accuracy per epoch (two series, each on its own scale).
pub(super) fn svg_training(log: &[EpochLog]) -> String {
    let mut s = svg_open("Training curves");
    let n = log.len() as f64;
    let lmax = log.iter().map(|e| e.train_loss).fold(0.0, f64::max);
    axes(&mut s, XTicks::Integers(log.len()), 0.0, lmax, "epoch", "train loss");
    let x = |i: usize| scale(i as f64 + 1.0, 1.0, n.max(2.0), M, W - M);
    polyline(
        &mut s,
        &log.iter().enumerate().map(|(i, e)| (x(i), scale(e.train_loss, 0.0, lmax, H - M, M))).collect::<Vec<_>>(),
        "#1f77b4",
    );
    let acc: Vec<(usize, f64)> = log.iter().enumerate().filter_map(|(i, e)| e.val_accuracy.map(|a| (i, a))).collect();
    if !acc.is_empty() {
        let lo = acc.iter().map(|a| a.1).fold(1.0, f64::min).min(0.99) - 0.005;
        polyline(&mut s, &acc.iter().map(|&(i, a)| (x(i), scale(a, lo, 1.0, H - M, M))).collect::<Vec<_>>(), "#ff7f0e");
        // Right-hand axis for accuracy.
        let r = W - M;
        let _ = writeln!(s, "<line x1=\"{r}\" y1=\"{M}\" x2=\"{r}\" y2=\"{}\" stroke=\"#ff7f0e\"/>", H - M);
        for i in 0..=4 {
            let f = f64::from(i) / 4.0;
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" fill=\"#ff7f0e\">{:.2}%</text>",
                r + 4.0,
                H - M - f * (H - 2.0 * M) + 4.0,
                100.0 * (lo + f * (1.0 - lo))
            );
        }
    }
    legend(&mut s, &[("train loss", "#1f77b4"), ("val accuracy", "#ff7f0e")]);
    s.push_str("</svg>\n");
    s
}

/// Reliability diagram: accuracy against confidence per bin, teacher and student, with the diagonal.
pub(super) fn svg_reliability(teacher: &[Bin], student: &[Bin]) -> String {
    let mut s = svg_open("Reliability (15 bins): accuracy vs confidence");
    axes(&mut s, XTicks::Range(0.0, 1.0), 0.0, 1.0, "confidence (top-1 probability)", "accuracy");
    let _ = writeln!(
        s,
        "<line x1=\"{M}\" y1=\"{}\" x2=\"{}\" y2=\"{M}\" stroke=\"gray\" stroke-dasharray=\"4\"/>",
        H - M,
        W - M
    );
    let bw = (W - 2.0 * M) / ECE_BINS as f64;
    for (k, (bins, color)) in [(teacher, "#2ca02c"), (student, "#d62728")].into_iter().enumerate() {
        for (i, b) in bins.iter().enumerate().filter(|(_, b)| b.count > 0) {
            let x = M + i as f64 * bw + k as f64 * bw / 2.0;
            let y = scale(b.accuracy, 0.0, 1.0, H - M, M);
            let _ = writeln!(s, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\" opacity=\"0.8\"><title>n={}</title></rect>", bw / 2.0 - 1.0, H - M - y, b.count);
        }
    }
    legend(&mut s, &[("teacher", "#2ca02c"), ("student", "#d62728")]);
    s.push_str("</svg>\n");
    s
}

/// The teacher's softmax for three rows at T = 1, 4 and 20: what a higher temperature reveals.
pub(super) fn svg_temperatures(outputs: &TeacherOutputs, logits: &Array2<f32>) -> String {
    let temps = [(1.0f32, "#1f77b4"), (4.0, "#ff7f0e"), (20.0, "#2ca02c")];
    let k = logits.ncols();
    let rows: Vec<usize> = (0..outputs.ids.len().min(3)).collect();
    let mut s = svg_open("Teacher softmax at T = 1, 4, 20 for three rows");
    let panel_w = (W - 2.0 * M) / rows.len().max(1) as f64;
    axes(&mut s, XTicks::None, 0.0, 1.0, "class (one group of bars per row)", "probability");
    let mut p = vec![0f32; k];
    for (j, &r) in rows.iter().enumerate() {
        let z = logits.row(r).to_vec();
        let x0 = M + j as f64 * panel_w;
        let bw = panel_w / (k as f64 * 3.0 + 2.0);
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">id {}, label {}</text>",
            x0 + panel_w / 2.0,
            M + 4.0,
            outputs.ids[r],
            outputs.labels[r].map_or("-".into(), |l| l.to_string())
        );
        if k <= 20 {
            for c in 0..k {
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{c}</text>",
                    x0 + bw + (c * 3) as f64 * bw + 1.5 * bw,
                    H - M + 13.0
                );
            }
        }
        for (t_i, (t, color)) in temps.iter().enumerate() {
            softmax_t(&z, *t, &mut p);
            for (c, &pc) in p.iter().enumerate() {
                let x = x0 + bw + (c * 3 + t_i) as f64 * bw;
                let y = scale(f64::from(pc), 0.0, 1.0, H - M, M);
                let _ = writeln!(s, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>class {c}, T={t}: {pc:.4}</title></rect>", bw * 0.9, H - M - y);
            }
        }
    }
    legend(&mut s, &[("T = 1", "#1f77b4"), ("T = 4", "#ff7f0e"), ("T = 20", "#2ca02c")]);
    s.push_str("</svg>\n");
    s
}
