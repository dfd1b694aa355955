//! The plots as SVG: training curves, the reliability diagram (with the rows in each bin), the
//! teacher's softmax at several temperatures, and a sweep's validation metric against student size.
//! Axes get "nice" ticks (1, 2 or 5 times a power of ten) and margins wide enough for their labels;
//! every text that comes from data (class names, run names) is XML-escaped.

use std::fmt::Write as _;

use ndarray::Array2;

use super::Bin;
use crate::eval::ECE_BINS;
use crate::soften::softmax_t;
use crate::store::TeacherOutputs;
use crate::student::EpochLog;

const BLUE: &str = "#1f77b4";
const ORANGE: &str = "#ff7f0e";
const GREEN: &str = "#2ca02c";
const RED: &str = "#d62728";
const PURPLE: &str = "#9467bd";
/// Further series (each feature or relation term).
const MORE: [&str; 4] = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

/// A plot's canvas and the plotting area inside its margins.
#[derive(Clone, Copy)]
struct Frame {
    w: f64,
    h: f64,
    /// Left, right, top and bottom edges of the plotting area.
    l: f64,
    r: f64,
    t: f64,
    b: f64,
}

impl Frame {
    /// A `w` x `h` canvas: room for the title and legend above, tick labels and an axis title on the
    /// left, below and (for a second axis) on the right.
    fn new(w: f64, h: f64) -> Self {
        Frame { w, h, l: 78.0, r: w - 78.0, t: 62.0, b: h - 58.0 }
    }
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn svg_open(f: &Frame, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" \
         font-size=\"15\">{}</text>\n",
        f.w / 2.0,
        esc(title),
        w = f.w,
        h = f.h
    )
}

/// Ticks at 1, 2 or 5 times a power of ten covering [lo, hi], about `n` of them: (ticks, step).
fn nice_ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, f64) {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, lo + 0.5) };
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).floor() * step;
    let mut ticks = Vec::new();
    let mut v = first;
    while v < hi + step * 0.999 {
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        if v >= hi - step * 1e-9 {
            break;
        }
        v += step;
    }
    (ticks, step)
}

/// A tick value with as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    format!("{v:.decimals$}")
}

fn scale(v: f64, lo: f64, hi: f64, a: f64, b: f64) -> f64 {
    if hi > lo {
        a + (v - lo) / (hi - lo) * (b - a)
    } else {
        a
    }
}

/// How a vertical axis is drawn: its title, a suffix after each label, which side, its colour.
#[derive(Clone, Copy)]
struct YAxis<'a> {
    title: &'a str,
    suffix: &'a str,
    right: bool,
    color: &'a str,
}

impl<'a> YAxis<'a> {
    fn left(title: &'a str) -> Self {
        YAxis { title, suffix: "", right: false, color: "black" }
    }
}

/// A vertical axis over [lo, hi]: ticks, grid lines, labels and a rotated title, on the left or on the
/// right of the plotting area. Returns the axis range (the outer ticks).
fn y_axis(s: &mut String, f: &Frame, lo: f64, hi: f64, a: YAxis) -> (f64, f64) {
    let YAxis { title, suffix, right, color } = a;
    let (ticks, step) = nice_ticks(lo, hi, 5);
    let (y0, y1) = (ticks[0], *ticks.last().unwrap_or(&hi));
    let x = if right { f.r } else { f.l };
    let _ = writeln!(s, "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{color}\"/>", f.t, f.b);
    for &v in &ticks {
        let y = scale(v, y0, y1, f.b, f.t);
        if !right {
            let _ = writeln!(s, "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/>", f.l, f.r);
        }
        let (tx, anchor) = if right { (f.r + 6.0, "start") } else { (f.l - 6.0, "end") };
        let _ = writeln!(
            s,
            "<text x=\"{tx}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"{color}\">{}{suffix}</text>",
            y + 4.0,
            tick_label(v, step)
        );
    }
    let tx = if right { f.w - 14.0 } else { 16.0 };
    let cy = (f.t + f.b) / 2.0;
    let _ = writeln!(
        s,
        "<text x=\"{tx}\" y=\"{cy}\" text-anchor=\"middle\" fill=\"{color}\" transform=\"rotate(-90 {tx} {cy})\">{}</text>",
        esc(title)
    );
    (y0, y1)
}

/// The horizontal axis line, labels at `ticks` (x position, text) and the title under them.
fn x_axis(s: &mut String, f: &Frame, ticks: &[(f64, String)], title: &str) {
    let _ = writeln!(s, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", f.l, f.b, f.r, f.b);
    for (x, label) in ticks {
        let _ = writeln!(s, "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"black\"/>", f.b, f.b + 4.0);
        let _ = writeln!(s, "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", f.b + 18.0, esc(label));
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        (f.l + f.r) / 2.0,
        f.h - 14.0,
        esc(title)
    );
}

fn polyline(s: &mut String, pts: &[(f64, f64)], color: &str) {
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(s, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>", p.join(" "));
    for (x, y) in pts {
        let _ = writeln!(s, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"/>");
    }
}

/// A legend in one row under the title, for the series actually drawn.
fn legend(s: &mut String, f: &Frame, items: &[(&str, &str)]) {
    let mut x = f.l + 4.0;
    for (name, color) in items {
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"33\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"43\">{}</text>",
            x + 16.0,
            esc(name)
        );
        x += 28.0 + 7.0 * name.chars().count() as f64;
    }
}

/// Integer ticks 1..=n, at most about ten of them, at multiples of a nice step.
fn epoch_ticks(f: &Frame, n: usize) -> Vec<(f64, String)> {
    let (ticks, step) = nice_ticks(1.0, n as f64, 8);
    let step = step.max(1.0);
    let x = |e: f64| scale(e, 1.0, (n as f64).max(2.0), f.l, f.r);
    let mut out: Vec<(f64, String)> = vec![(x(1.0), "1".into())];
    for t in ticks {
        if t > 1.0 && t <= n as f64 && (t / step).fract() == 0.0 && (x(t) - out.last().map_or(0.0, |l| l.0)) > 20.0 {
            out.push((x(t), format!("{t:.0}")));
        }
    }
    out
}

/// Training loss (left axis; with feature or relation terms, their share too) and, when validation ran, validation accuracy and agreement (right axis,
/// percent) per epoch.
pub(super) fn svg_training(log: &[EpochLog]) -> String {
    let f = Frame::new(720.0, 420.0);
    let mut s = svg_open(&f, "Training curves");
    let n = log.len();
    let lmax = log.iter().map(|e| e.train_loss).filter(|l| l.is_finite()).fold(0.0, f64::max);
    let (y0, y1) = y_axis(&mut s, &f, 0.0, lmax, YAxis { color: BLUE, ..YAxis::left("train loss") });
    x_axis(&mut s, &f, &epoch_ticks(&f, n), "epoch");
    let x = |e: usize| scale(e as f64, 1.0, (n as f64).max(2.0), f.l, f.r);
    let loss: Vec<(f64, f64)> = log.iter().map(|e| (x(e.epoch), scale(e.train_loss, y0, y1, f.b, f.t))).collect();
    polyline(&mut s, &loss, BLUE);
    let mut items = vec![("train loss", BLUE)];
    // The feature and relation terms' share of it (`--hint`, `--rkd`, `--sp`, `--at`), on the same
    // axis; with several terms, each one too.
    let relation: Vec<(f64, f64)> =
        log.iter().filter_map(|e| e.relation_loss.map(|r| (x(e.epoch), scale(r, y0, y1, f.b, f.t)))).collect();
    if !relation.is_empty() {
        polyline(&mut s, &relation, GREEN);
        items.push(("of which feature/relation terms", GREEN));
    }
    let names: std::collections::BTreeSet<&str> =
        log.iter().filter_map(|e| e.term_losses.as_ref()).flat_map(|t| t.keys().map(String::as_str)).collect();
    if names.len() > 1 {
        for (name, color) in names.into_iter().zip(MORE.iter().cycle()) {
            let term =
                |e: &EpochLog| e.term_losses.as_ref()?.get(name).map(|v| (x(e.epoch), scale(*v, y0, y1, f.b, f.t)));
            polyline(&mut s, &log.iter().filter_map(term).collect::<Vec<_>>(), color);
            items.push((name, color));
        }
    }
    let acc: Vec<(usize, f64)> = log.iter().filter_map(|e| e.val_accuracy.map(|a| (e.epoch, 100.0 * a))).collect();
    let agr: Vec<(usize, f64)> = log.iter().filter_map(|e| e.val_agreement.map(|a| (e.epoch, 100.0 * a))).collect();
    if !acc.is_empty() || !agr.is_empty() {
        let all = acc.iter().chain(&agr).map(|p| p.1);
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (a0, a1) = y_axis(
            &mut s,
            &f,
            lo,
            hi.max(lo + 0.1),
            YAxis { title: "validation (%)", suffix: "%", right: true, color: ORANGE },
        );
        for (series, color, name) in [(&acc, ORANGE, "val accuracy"), (&agr, PURPLE, "val agreement with teacher")] {
            if !series.is_empty() {
                polyline(
                    &mut s,
                    &series.iter().map(|&(e, v)| (x(e), scale(v, a0, a1, f.b, f.t))).collect::<Vec<_>>(),
                    color,
                );
                items.push((name, color));
            }
        }
    }
    legend(&mut s, &f, &items);
    s.push_str("</svg>\n");
    s
}

/// Reliability diagram: accuracy against confidence per bin for teacher and student, the diagonal, and
/// under it the rows in each bin (most rows of a confident model sit in the last bin).
pub(super) fn svg_reliability(teacher: &[Bin], student: &[Bin]) -> String {
    let f = Frame { b: 330.0, ..Frame::new(720.0, 520.0) };
    let mut s = svg_open(&f, "Reliability (15 bins): accuracy vs confidence");
    let (y0, y1) = y_axis(&mut s, &f, 0.0, 1.0, YAxis::left("accuracy"));
    let _ = writeln!(s, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", f.l, f.b, f.r, f.b);
    let _ = writeln!(
        s,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"gray\" stroke-dasharray=\"4\"/>",
        f.l, f.b, f.r, f.t
    );
    let bw = (f.r - f.l) / ECE_BINS as f64;
    for (k, (bins, color)) in [(teacher, GREEN), (student, RED)].into_iter().enumerate() {
        for (i, b) in bins.iter().enumerate().filter(|(_, b)| b.count > 0) {
            let x = f.l + i as f64 * bw + k as f64 * bw / 2.0;
            let y = scale(b.accuracy, y0, y1, f.b, f.t);
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\" opacity=\"0.8\"><title>n={}</title></rect>",
                bw / 2.0 - 1.0,
                f.b - y,
                b.count
            );
        }
    }
    // The rows in each bin, on their own panel with a log scale (1 row to the largest bin), so that a
    // bin of 10 rows shows next to one of 9,000; the share is written on bins of at least 5%.
    let p = Frame { t: f.b + 46.0, b: f.h - 58.0, ..f };
    let total = |bins: &[Bin]| bins.iter().map(|b| b.count).sum::<u64>().max(1);
    let most = teacher.iter().chain(student).map(|b| b.count).max().unwrap_or(1).max(10);
    let decades = (most as f64).log10().ceil().max(1.0);
    let _ = writeln!(s, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", p.l, p.t, p.l, p.b);
    for d in 0..=decades as u32 {
        let y = scale(f64::from(d), 0.0, decades, p.b, p.t);
        let text = match 10u64.pow(d) {
            n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
            n if n >= 1000 => format!("{}k", n / 1000),
            n => n.to_string(),
        };
        let _ = writeln!(s, "<line x1=\"{}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/>", p.l, p.r);
        let _ = writeln!(s, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{text}</text>", p.l - 6.0, y + 4.0);
    }
    let cy = (p.t + p.b) / 2.0;
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{cy}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {cy})\">rows (log)</text>"
    );
    let ticks: Vec<(f64, String)> =
        (0..=5).map(|i| (f.l + f64::from(i) / 5.0 * (f.r - f.l), format!("{:.1}", f64::from(i) / 5.0))).collect();
    x_axis(&mut s, &p, &ticks, "confidence (top-1 probability)");
    for (k, (bins, color)) in [(teacher, GREEN), (student, RED)].into_iter().enumerate() {
        for (i, b) in bins.iter().enumerate().filter(|(_, b)| b.count > 0) {
            let x = f.l + i as f64 * bw + k as f64 * bw / 2.0;
            // One row sits a little above the axis, so that it shows.
            let y = scale((b.count as f64).log10() + 0.15, 0.0, decades + 0.15, p.b, p.t);
            let _ = writeln!(s, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\" opacity=\"0.8\"><title>{} rows</title></rect>", bw / 2.0 - 1.0, p.b - y, b.count);
            let share = 100.0 * b.count as f64 / total(bins) as f64;
            if share >= 5.0 {
                let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\" fill=\"{color}\">{share:.0}%</text>", x + bw / 4.0, y - 3.0);
            }
        }
    }
    legend(&mut s, &f, &[("teacher", GREEN), ("student", RED), ("perfect calibration (dashed)", "gray")]);
    s.push_str("</svg>\n");
    s
}

/// The teacher's softmax for three rows at T = 1, 4 and 20: what a higher temperature reveals. Classes
/// are named by `class_names` when given (cut to 8 characters).
pub(super) fn svg_temperatures(
    outputs: &TeacherOutputs,
    logits: &Array2<f32>,
    class_names: Option<&[String]>,
) -> String {
    let temps = [(1.0f32, BLUE), (4.0, ORANGE), (20.0, GREEN)];
    let k = logits.ncols();
    let rows: Vec<usize> = (0..outputs.ids.len().min(3)).collect();
    let f = Frame { b: 420.0 - 78.0, ..Frame::new(900.0, 420.0) };
    let mut s = svg_open(&f, "Teacher softmax at T = 1, 4, 20 for three rows");
    let panel_w = (f.r - f.l) / rows.len().max(1) as f64;
    let (y0, y1) = y_axis(&mut s, &f, 0.0, 1.0, YAxis::left("probability"));
    let _ = writeln!(s, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", f.l, f.b, f.r, f.b);
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">class (one panel per row)</text>",
        (f.l + f.r) / 2.0,
        f.h - 12.0
    );
    let name = |c: usize| -> String {
        match class_names.and_then(|n| n.get(c)) {
            Some(n) if n.chars().count() > 8 => n.chars().take(7).collect::<String>() + "…",
            Some(n) => n.clone(),
            None => c.to_string(),
        }
    };
    let label = |l: Option<i64>| match l {
        Some(l) if l >= 0 => name(l as usize),
        _ => "-".into(),
    };
    let mut p = vec![0f32; k];
    for (j, &r) in rows.iter().enumerate() {
        let z = logits.row(r).to_vec();
        let x0 = f.l + j as f64 * panel_w;
        let bw = panel_w / (k as f64 * 3.0 + 2.0);
        if j > 0 {
            let _ =
                writeln!(s, "<line x1=\"{x0:.1}\" y1=\"{}\" x2=\"{x0:.1}\" y2=\"{}\" stroke=\"#cccccc\"/>", f.t, f.b);
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">id {}, label {}</text>",
            x0 + panel_w / 2.0,
            f.t - 4.0,
            outputs.ids[r],
            esc(&label(outputs.labels[r]))
        );
        if k <= 20 {
            let rotate = class_names.is_some() && 3.0 * bw < 40.0;
            for c in 0..k {
                let cx = x0 + bw + (c * 3) as f64 * bw + 1.5 * bw;
                let cy = f.b + 14.0;
                let transform = if rotate { format!(" transform=\"rotate(-45 {cx:.1} {cy})\"") } else { String::new() };
                let anchor = if rotate { "end" } else { "middle" };
                let _ = writeln!(
                    s,
                    "<text x=\"{cx:.1}\" y=\"{cy}\" text-anchor=\"{anchor}\" font-size=\"10\"{transform}>{}</text>",
                    esc(&name(c))
                );
            }
        }
        for (t_i, (t, color)) in temps.iter().enumerate() {
            softmax_t(&z, *t, &mut p);
            for (c, &pc) in p.iter().enumerate() {
                let x = x0 + bw + (c * 3 + t_i) as f64 * bw;
                let y = scale(f64::from(pc), y0, y1, f.b, f.t);
                let _ = writeln!(s, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}, T={t}: {pc:.4}</title></rect>", bw * 0.9, f.b - y, esc(&name(c)));
            }
        }
    }
    legend(&mut s, &f, &[("T = 1", BLUE), ("T = 4", ORANGE), ("T = 20", GREEN)]);
    s.push_str("</svg>\n");
    s
}

/// A sweep: each run's validation metric against its parameter count (log scale), the chosen run
/// marked and named.
pub(crate) fn svg_sweep(r: &crate::sweep::SweepReport) -> String {
    let f = Frame::new(720.0, 440.0);
    let mut s = svg_open(&f, &format!("Sweep: {} against student size", r.metric));
    let pts: Vec<(&crate::sweep::RunResult, f64, f64)> = r
        .runs
        .iter()
        .filter_map(|run| run.score().map(|v| (run, (run.parameters.max(1) as f64).log10(), 100.0 * v)))
        .collect();
    if pts.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no run has a result</text>",
            f.w / 2.0,
            f.h / 2.0
        );
        s.push_str("</svg>\n");
        return s;
    }
    let (lo, hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.2), hi.max(p.2)));
    let (y0, y1) = y_axis(&mut s, &f, lo, hi.max(lo + 0.1), YAxis { suffix: "%", ..YAxis::left(&r.metric) });
    let (xlo, xhi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    // Log-scale x: decades and their 2x and 5x, padded by a tenth of a decade.
    // The range reaches the 1-2-5 ticks just outside the data, so every point has a tick on each side.
    let below = |v: f64| {
        let d = v.floor();
        [5.0f64, 2.0, 1.0].iter().map(|m| d + m.log10()).find(|t| *t <= v + 1e-9).unwrap_or(d)
    };
    let above = |v: f64| {
        let d = v.floor();
        [1.0f64, 2.0, 5.0, 10.0].iter().map(|m| d + m.log10()).find(|t| *t >= v - 1e-9).unwrap_or(d + 1.0)
    };
    let (x0, x1) = (below(xlo) - 0.05, above(xhi.max(xlo + 0.3)) + 0.05);
    let mut ticks = Vec::new();
    let mut dec = x0.floor() as i32;
    while f64::from(dec) <= x1 {
        for m in [1.0f64, 2.0, 5.0] {
            let v = f64::from(dec) + m.log10();
            if v >= x0 && v <= x1 {
                let n = m * 10f64.powi(dec);
                let text = if n >= 1e6 {
                    format!("{}M", n / 1e6)
                } else if n >= 1e3 {
                    format!("{}k", n / 1e3)
                } else {
                    format!("{n}")
                };
                ticks.push((scale(v, x0, x1, f.l, f.r), text));
            }
        }
        dec += 1;
    }
    x_axis(&mut s, &f, &ticks, "student parameters (log scale)");
    for (i, (run, x, y)) in pts.iter().enumerate() {
        let (px, py) = (scale(*x, x0, x1, f.l, f.r), scale(*y, y0, y1, f.b, f.t));
        let chosen = r.chosen.as_deref() == Some(run.name.as_str()) && i == 0;
        let (color, radius) = if chosen { (RED, 6.0) } else { (BLUE, 4.0) };
        let _ = writeln!(
            s,
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"{radius}\" fill=\"{color}\"><title>{}: {y:.2}%, {} parameters</title></circle>",
            esc(&run.name),
            run.parameters
        );
        if chosen {
            let anchor = if px > (f.l + f.r) / 2.0 { "end" } else { "start" };
            let dx = if anchor == "end" { -9.0 } else { 9.0 };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"{RED}\">{}</text>",
                px + dx,
                py - 8.0,
                esc(&run.name)
            );
        }
    }
    legend(&mut s, &f, &[("run", BLUE), ("chosen (best on validation)", RED)]);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        // The smallest of 1, 2, 5 x 10^k at least (hi - lo) / n: 0.23 -> 0.5.
        let (t, step) = nice_ticks(0.0, 1.15, 5);
        assert_eq!((step, t.clone()), (0.5, vec![0.0, 0.5, 1.0, 1.5]));
        let (t, step) = nice_ticks(0.0, 2.04, 5);
        assert_eq!((step, t.len(), t[4]), (0.5, 6, 2.0));
        let (t, step) = nice_ticks(96.3, 98.9, 5);
        assert_eq!((step, t.clone()), (1.0, vec![96.0, 97.0, 98.0, 99.0]));
        let (t, step) = nice_ticks(96.3, 98.1, 5);
        assert_eq!((t[0], tick_label(t[1], step)), (96.0, "96.5".to_string()));
        assert!(t.iter().all(|v| (v / step - (v / step).round()).abs() < 1e-9), "{t:?}");
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }

    #[test]
    fn the_relation_terms_are_drawn_only_when_logged() {
        let entry = |epoch: usize, relation_loss: Option<f64>| EpochLog {
            epoch,
            train_loss: 2.0 / epoch as f64,
            relation_loss,
            term_losses: relation_loss
                .map(|r| [("at x@block2".to_string(), r / 4.0), ("hint y@1".into(), r * 0.75)].into()),
            lr: 1e-3,
            val_accuracy: None,
            val_errors: None,
            val_agreement: None,
            val_kl: None,
            seconds: 1.0,
        };
        let with = svg_training(&[entry(1, Some(1.5)), entry(2, Some(0.5))]);
        let without = svg_training(&[entry(1, None), entry(2, None)]);
        assert!(with.contains("of which feature/relation terms") && with.matches("<polyline").count() == 4, "{with}");
        assert!(with.contains(">at x@block2<") && with.contains(">hint y@1<"), "{with}");
        assert!(!without.contains("relation") && without.matches("<polyline").count() == 1, "{without}");
    }
}
