//! Input formats other than Parquet (issue 15): NumPy `.npy` (written by numpy's `np.save`) and CSV
//! (written by Python's csv module) give the same soft labels as the same rows in Parquet, every dtype
//! reads as its values, and hostile files are refused with one line naming the file, the column and
//! the row or line.

use std::path::Path;

use softlabel::data::{DataSpec, ElementType};
use softlabel::store::SoftLabels;

use crate::cli::{assert_fails, assert_ok, s, softlabel};
use crate::common::fx;

fn logits_in_order(dir: &Path) -> (Vec<Vec<u32>>, Vec<Option<i64>>) {
    let d = SoftLabels::open(dir).unwrap().load().unwrap();
    let mut rows: Vec<(u64, Vec<u32>, Option<i64>)> = (0..d.ids.len())
        .map(|i| (d.ids[i], d.dense_logits().unwrap().row(i).iter().map(|v| v.to_bits()).collect(), d.labels[i]))
        .collect();
    rows.sort_by_key(|r| r.0);
    (rows.iter().map(|r| r.1.clone()).collect(), rows.iter().map(|r| r.2).collect())
}

fn precompute(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let teacher = fx("linear.onnx");
    let args = ["precompute", "--teacher", s(&teacher), "--data", s(data), "-T", "2", "--out", s(out)];
    softlabel(&[&args[..], extra].concat())
}

/// The same 200 rows from Parquet, .npy (+ labels .npy) and CSV (a text column and quoted commas
/// beside the features) give bit-identical teacher logits and the same labels; resumable reads start
/// at the batch holding the skipped-to row.
#[test]
fn npy_and_csv_give_the_logits_parquet_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let (pq, npy, csv) = (tmp.path().join("pq"), tmp.path().join("npy"), tmp.path().join("csv"));
    assert_ok(&precompute(&fx("small.parquet"), &pq, &[]));
    let labels = fx("small_labels.npy");
    assert_ok(&precompute(&fx("small.npy"), &npy, &["--labels-npy", s(&labels), "--batch-size", "37"]));
    assert_ok(&precompute(&fx("small.csv"), &csv, &["--input-column", "a,b,c,d", "--batch-size", "64"]));
    let want = logits_in_order(&pq);
    assert_eq!(want.0.len(), 200);
    assert_eq!(logits_in_order(&npy), want, "npy");
    // .npz: stored (np.savez) and deflated (np.savez_compressed) members; the format comes from the
    // content, so a renamed file reads the same.
    for (name, extra) in [
        ("small.npz", &["--npz-key", "x", "--npz-labels", "y"][..]),
        ("small_compressed.npz", &["--npz-key", "x", "--npz-labels", "y", "--batch-size", "33"][..]),
        ("one.npz", &["--labels-npy", s(&labels)][..]),
    ] {
        let out = tmp.path().join(name);
        assert_ok(&precompute(&fx(name), &out, extra));
        assert_eq!(logits_in_order(&out), want, "{name}");
    }
    let renamed = tmp.path().join("data.bin");
    std::fs::copy(fx("small_compressed.npz"), &renamed).unwrap();
    let out = tmp.path().join("renamed");
    assert_ok(&precompute(&renamed, &out, &["--npz-key", "x", "--npz-labels", "y"]));
    assert_eq!(logits_in_order(&out), want, "renamed npz");
    let renamed = tmp.path().join("features.txt");
    std::fs::copy(fx("small.csv"), &renamed).unwrap();
    let out = tmp.path().join("renamed-csv");
    assert_ok(&precompute(&renamed, &out, &[]));
    assert_eq!(logits_in_order(&out), want, "renamed csv");
    assert_eq!(logits_in_order(&csv), want, "csv");
    // The CSV's numeric columns but label and id are the default input (the text column is left out).
    let csv2 = tmp.path().join("csv2");
    assert_ok(&precompute(&fx("small.csv"), &csv2, &[]));
    assert_eq!(logits_in_order(&csv2), want, "csv with default columns");
    let m = SoftLabels::open(&csv2).unwrap().manifest().clone();
    assert_eq!(m.input.source_column, "a,b,c,d");
    // A student trains from the npy labels and evaluates on the CSV (same rows).
    let st = tmp.path().join("st");
    assert_ok(&softlabel(&["train", "--labels", s(&npy), "--out", s(&st), "--epochs", "2"]));
    // (The student recorded its input as `small.npy`: on CSV the columns are named.)
    let csv_data = fx("small.csv");
    assert_ok(&softlabel(&["eval", "--student", s(&st), "--data", s(&csv_data), "--input-column", "a,b,c,d"]));
    assert_ok(&softlabel(&["eval", "--student", s(&st), "--data", s(&fx("small.npy")), "--labels-npy", s(&labels)]));

    let npz = |k: &str| DataSpec { npz_key: Some(k.into()), npz_labels: Some("y".into()), ..DataSpec::new("input") };
    // Label-only labels from .npy: the inputs join back by id from the array alone (the fingerprint is
    // the input file's; the labels file is the label column's name).
    let bare = tmp.path().join("bare");
    assert_ok(&precompute(&fx("small.npy"), &bare, &["--labels-npy", s(&labels), "--no-inputs"]));
    assert_eq!(SoftLabels::open(&bare).unwrap().manifest().label_column.as_deref(), Some("small_labels.npy"));
    let st2 = tmp.path().join("st2");
    let x = fx("small.npy");
    assert_ok(&softlabel(&["train", "--labels", s(&bare), "--inputs", s(&x), "--out", s(&st2), "--epochs", "1"]));
    let o =
        softlabel(&["eval", "--student", s(&st2), "--data", s(&x), "--labels-npy", s(&labels), "--labels", s(&bare)]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("agreement"), "{o:?}");
    for (path, spec) in [
        (fx("small.npy"), DataSpec { labels_npy: Some(labels.clone()), ..DataSpec::new("input") }),
        (fx("small.npz"), npz("x")),
        (fx("small_compressed.npz"), npz("x")),
        (fx("small.csv"), DataSpec::new("input")),
    ] {
        let src = softlabel::data::open(&path, &spec).unwrap();
        assert_eq!(src.rows(), 200);
        let first = src.batches_from(50, 123).next().unwrap().unwrap();
        assert_eq!((first.first_source_row, first.len()), (100, 50), "{}", path.display());
        let all: Vec<_> = src.batches(50).map(|b| b.unwrap()).collect();
        assert_eq!(first.input_f32(), all[2].input_f32());
        assert_eq!(first.labels, all[2].labels);
        assert!(first.labels.iter().all(Option::is_some));
    }
}

/// Every numeric dtype numpy writes (both byte orders) reads as its values: (i % 7) at flat index i.
#[test]
fn every_npy_dtype_reads_as_its_values() {
    let cases = [
        ("u1", ElementType::U8),
        ("i1", ElementType::I8),
        ("u2", ElementType::U16),
        ("i2", ElementType::I16),
        ("i2_be", ElementType::I16),
        ("u4", ElementType::U32),
        ("i4", ElementType::I32),
        ("u8", ElementType::U64),
        ("i8", ElementType::I64),
        ("f2", ElementType::F32),
        ("f4", ElementType::F32),
        ("f4_be", ElementType::F32),
        ("f8", ElementType::F64),
        ("bool", ElementType::U8),
    ];
    for (name, element) in cases {
        let src = softlabel::data::open(&fx(&format!("dtype_{name}.npy")), &DataSpec::new("input")).unwrap();
        assert_eq!((src.element_type(), src.width(), src.rows()), (element, Some(4), 6), "{name}");
        let values: Vec<f32> = src.batches(4).flat_map(|b| b.unwrap().input_f32()).collect();
        let want: Vec<f32> =
            (0..24).map(|i| if name == "bool" { (i % 7 % 2) as f32 } else { (i % 7) as f32 }).collect();
        assert_eq!(values, want, "{name}");
    }
}

/// A `.npy` v1.0 file: magic, header padded to 64 bytes, then `data`.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn hostile_npy_files_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let good = std::fs::read(fx("small.npy")).unwrap();
    let four = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() - 10].to_vec(), "needs 3200 bytes of values, the file holds 3190 (truncated)"),
        ("padded", [&good[..], &[0u8; 4]].concat(), "(trailing bytes)"),
        ("not-npy", b"\x00\x01 not numpy at all".to_vec(), "does not start with the NumPy magic bytes"),
        ("version", [&b"\x93NUMPY\x09\x00"[..], &good[8..]].concat(), "format version 9.0"),
        ("huge-header", [&b"\x93NUMPY\x02\x00\xff\xff\xff\x7f"[..], &good[10..]].concat(), "its header claims"),
        (
            "header-lie",
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", &f32s(&[0.0; 8])),
            "(truncated)",
        ),
        (
            "overflow",
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 4), }", &[]),
            "holds more values than a file can",
        ),
        (
            "wide-row",
            npy("{'descr': '|u1', 'fortran_order': False, 'shape': (0, 100000, 100000), }", &[]),
            "has more than 67108864 values per row",
        ),
        ("scalar", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &f32s(&[1.0])), "is a scalar"),
        (
            "structured",
            npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", &[0; 4]),
            "structured",
        ),
        (
            "complex",
            npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]),
            "dtype '<c8' is not numeric",
        ),
        (
            "bad-bool",
            npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2, 4), }", &[0, 1, 0, 1, 1, 7, 0, 0]),
            "row 1: value 1 of the row is byte 7",
        ),
        (
            "nan",
            npy(four, &f32s(&[0.0, 1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0, 7.0])),
            "row 1: input value 1 of the row is NaN (--skip-nonfinite skips such rows)",
        ),
    ];
    for (name, bytes, expect) in cases {
        let p = tmp.path().join(format!("{name}.npy"));
        std::fs::write(&p, bytes).unwrap();
        let o = precompute(&p, &out, &[]);
        assert_fails(&o, expect);
        assert_fails(&o, &format!("{name}.npy"));
        assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1, "{name}: one line");
        assert!(!out.join("_manifest.json").exists());
    }
    for (file, extra, expect) in [
        (
            "small_fortran.npy",
            None,
            "Fortran (column-major) order; save it with np.save(path, np.ascontiguousarray(x))",
        ),
        ("objects.npy", None, "dtype '|O' is not numeric"),
        (
            "small.npy",
            Some("small_labels_float.npy"),
            "small_labels_float.npy: labels have dtype '<f8', expected an integer",
        ),
        ("small.npy", Some("small_labels_short.npy"), "small_labels_short.npy: 199 labels for the 200 rows"),
        ("small.parquet", Some("small_labels.npy"), "--labels-npy goes with .npy or .npz data; "),
    ] {
        let labels = extra.map(fx);
        let args: Vec<&str> = labels.iter().flat_map(|l| ["--labels-npy", s(l)]).collect();
        assert_fails(&precompute(&fx(file), &out, &args), expect);
    }
    // .npz archives.
    let npz = std::fs::read(fx("small_compressed.npz")).unwrap();
    let mut corrupt = npz.clone();
    for b in &mut corrupt[400..1400] {
        *b ^= 0x5a;
    }
    // A member claiming more bytes than deflate can make from its compressed ones (a zip bomb's claim).
    let mut bomb = npz.clone();
    let mut at = 0;
    while let Some(i) = bomb[at..].windows(4).position(|w| w == b"PK\x01\x02").map(|i| i + at) {
        let name_len = u16::from_le_bytes([bomb[i + 28], bomb[i + 29]]) as usize;
        if &bomb[i + 46..i + 46 + name_len] == b"x.npy" {
            bomb[i + 24..i + 28].copy_from_slice(&0xF000_0000u32.to_le_bytes());
        }
        at = i + 4;
    }
    let write = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    for (path, args, expect) in [
        (fx("small.npz"), &[][..], "the archive holds arrays x, y; name the input with --npz-key NAME"),
        (fx("small.npz"), &["--npz-key", "z"][..], "no array 'z' in the archive (arrays: x, y); choose with --npz-key"),
        (fx("small.npz"), &["--npz-key", "y"][..], "has shape [batch, 4] (4 values per row)"),
        (fx("small.npz"), &["--npz-key", "x", "--npz-labels", "x"][..], "member 'x': labels have dtype '<f4'"),
        (write("cut.npz", &npz[..npz.len() / 2]), &["--npz-key", "x"][..], "cut.npz: not a readable .npz archive"),
        (write("corrupt.npz", &corrupt), &["--npz-key", "x"][..], "corrupt.npz: member 'x'"),
        (write("bomb.npz", &bomb), &["--npz-key", "x"][..], "claims 4026531840 bytes from"),
        (fx("small.npy"), &["--npz-key", "x"][..], "--npz-key and --npz-labels go with .npz data; "),
        (
            write("mystery", b"\x00\x01\x02\x03binary"),
            &[][..],
            "not a format softlabel reads (Parquet, .npy, .npz, or CSV",
        ),
    ] {
        let o = precompute(&path, &out, args);
        assert_fails(&o, expect);
        assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1, "{expect}: one line");
        assert!(!out.join("_manifest.json").exists());
    }
}

fn text_has_abcd(p: &Path) -> bool {
    let mut head = vec![0u8; 64];
    let n = std::io::Read::read(&mut std::fs::File::open(p).unwrap(), &mut head).unwrap();
    String::from_utf8_lossy(&head[..n]).lines().next().is_some_and(|l| l.contains("a,b,c,d"))
}

#[test]
fn hostile_csv_files_are_refused_naming_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let rows = "id,label,a,b,c,d\n1,0,1,2,3,4\n2,1,1,2,3,4\n3,2,1,2,3,4\n";
    let long = format!("a,b,c,d\n{}\n", "1".repeat(17 << 20));
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad-number", format!("{rows}4,1,1,2,x1,4\n"), "line 5, column 'c': 'x1' is not a number"),
        ("empty-value", format!("{rows}4,1,1,,3,4\n"), "line 5, column 'b': the value is empty"),
        ("bad-label", format!("{rows}4,one,1,2,3,4\n"), "line 5, column 'label': label 'one' is not an integer"),
        ("bad-id", format!("{rows}-4,1,1,2,3,4\n"), "line 5, column 'id': id '-4' is not an integer >= 0"),
        ("nan", format!("{rows}4,1,1,2,NaN,4\n"), "line 5, column 'c': the value is NaN (--skip-nonfinite skips"),
        ("ragged", format!("{rows}4,1,1,2,3\n"), "Expected 6 records, found 5 records at line 5"),
        ("no-header", "1,0,1,2\n2,1,3,4\n".to_string(), "line 1 looks like data ('1' is a number), not a header"),
        ("twice", "a,b,a\n1,2,3\n".to_string(), "column 'a' is named twice in the header"),
        ("no-numbers", "name,kind\nx,y\n".to_string(), "no numeric column to use as the input (columns: name, kind)"),
        ("empty", String::new(), "no header row"),
        ("long-line", long, "a line is longer than 16 MiB"),
        ("wide", format!("{}\n", vec!["c"; 70_000].join(",")), "the header has 70000 fields; at most 65536 are read"),
    ];
    for (name, text, expect) in cases {
        let p = tmp.path().join(format!("{name}.csv"));
        std::fs::write(&p, text).unwrap();
        // Named columns: by default a column with a non-number in its first 1000 records is not input.
        let named = text_has_abcd(&p);
        let o = precompute(&p, &out, if named { &["--input-column", "a,b,c,d"][..] } else { &[] });
        assert_fails(&o, expect);
        assert_fails(&o, &format!("{name}.csv"));
        assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1, "{name}: one line");
        assert!(!out.join("_manifest.json").exists());
    }
    let o = precompute(&fx("small.csv"), &out, &["--input-column", "a,zz"]);
    assert_fails(&o, "no column 'zz' (columns: id, label, note, a, b, c, d); choose it with --input-column a,b,c");
    let o = precompute(&fx("small.csv"), &out, &["--input-column", "a,b,c,note"]);
    assert_fails(&o, "line 2, column 'note': 'row 0, quoted' is not a number");
}

/// `import`: outputs made elsewhere, joined to the data by id, give the dataset precompute gives from
/// the same logits (JSONL written here, and the precomputed part's own `id` + `logits` columns as
/// Parquet outputs); bad outputs are refused in one line naming the file and the line or row.
#[test]
fn import_joins_outputs_by_id_and_refuses_bad_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let small = fx("small.parquet");
    let pre = tmp.path().join("pre");
    assert_ok(&precompute(&small, &pre, &[]));
    let d = SoftLabels::open(&pre).unwrap().load().unwrap();
    let logits = d.dense_logits().unwrap();
    let line = |id: u64, r: usize| {
        let v: Vec<String> = logits.row(r).iter().map(|x| x.to_string()).collect();
        format!("{{\"id\": {id}, \"logits\": [{}]}}\n", v.join(", "))
    };
    let jsonl: String = (0..d.ids.len()).map(|r| line(d.ids[r], r)).collect();
    let outputs = tmp.path().join("outputs.jsonl");
    std::fs::write(&outputs, &jsonl).unwrap();
    let import = |outputs: &Path, out: &Path, extra: &[&str]| {
        let args = ["import", "--outputs", s(outputs), "--data", s(&small), "-T", "2", "--out", s(out)];
        softlabel(&[&args[..], extra].concat())
    };
    let want = logits_in_order(&pre);
    let a = tmp.path().join("a");
    assert_ok(&import(&outputs, &a, &[]));
    assert_eq!(logits_in_order(&a), want, "jsonl logits");
    assert_ok(&softlabel(&["verify", s(&a)]));
    let part = std::fs::read_dir(&pre)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let b = tmp.path().join("b");
    assert_ok(&import(&part, &b, &["--teacher-name", "the linear fixture"]));
    assert_eq!(logits_in_order(&b), want, "parquet logits");
    let m = SoftLabels::open(&b).unwrap().manifest().clone();
    let info = m.teacher.imported.clone().unwrap();
    assert_eq!((info.format.as_str(), info.column.as_str(), info.rows), ("parquet", "logits", 200));
    assert_eq!(m.schema_version, "2.4");
    // Top-k and shards work on imported outputs as on a model's.
    assert_ok(&import(&outputs, &tmp.path().join("topk"), &["--top-k", "2"]));
    assert_ok(&import(&outputs, &tmp.path().join("s0"), &["--shard", "0/2"]));

    let good = line(d.ids[0], 0);
    let body = |extra: &str| format!("{good}{extra}");
    let cases: Vec<(&str, String, &[&str], &str)> = vec![
        ("no-id", body("{\"logits\": [1, 2, 3]}\n"), &[], "line 2: no 'id'"),
        ("dup", body(&good), &[], "line 2: duplicate id 1000 (first at line 1)"),
        (
            "ragged",
            body("{\"id\": 5, \"logits\": [1, 2]}\n"),
            &[],
            "line 2: 'logits' has 2 values, the first row has 3",
        ),
        (
            "text",
            body("{\"id\": 5, \"logits\": [1, \"x\", 3]}\n"),
            &[],
            "line 2: value 1 of 'logits' is \"x\", not a number",
        ),
        ("not-json", body("id=5\n"), &[], "line 2: not a JSON object"),
        ("neg-id", body("{\"id\": -5, \"logits\": [1, 2, 3]}\n"), &[], "line 2: id -5 is not an integer >= 0"),
        ("missing-row", good.clone(), &[], "holds no output for id 1001 (row 1 of"),
        (
            "bad-probs",
            "{\"id\": 1000, \"probs\": [0.5, 0.4, 0.3]}\n".into(),
            &[],
            "line 1, id 1000: probabilities sum to 1.2",
        ),
        (
            "neg-prob",
            "{\"id\": 1000, \"probs\": [1.5, -0.5, 0]}\n".into(),
            &[],
            "line 1, id 1000: probability 0 is 1.5, outside [0, 1]",
        ),
        (
            "no-values",
            "{\"id\": 1000, \"scores\": [1]}\n".into(),
            &[],
            "line 1: no values: expected one of the keys logits, probs",
        ),
        ("views", jsonl.clone(), &["--views", "2"], "--views needs a teacher to run on every view"),
    ];
    let out = tmp.path().join("out");
    for (name, text, extra, expect) in cases {
        let p = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&p, text).unwrap();
        let o = import(&p, &out, extra);
        assert_fails(&o, expect);
        if name != "views" {
            assert_fails(&o, &format!("{name}.jsonl"));
        }
        assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1, "{name}: one line");
        assert!(!out.join("_manifest.json").exists(), "{name}");
    }
    // Top-k log-probabilities (3 classes, top 2, at T = 1).
    let topk: Vec<(&str, String, &[&str], &str)> = vec![
        (
            "topk-twice",
            "{\"id\": 1000, \"top_logprobs\": [{\"token\": \"1\", \"logprob\": -0.1}, {\"token\": \"1\", \"logprob\": -3}]}\n".into(),
            &["--num-classes", "3", "--top-k", "2"],
            "line 1: class '1' is given twice",
        ),
        (
            "topk-mass",
            "{\"id\": 1000, \"top_logprobs\": {\"0\": -0.1, \"2\": -0.2}}\n".into(),
            &["--num-classes", "3", "--top-k", "2"],
            "line 1: the exponentials of the log-probabilities sum to 1.72",
        ),
        (
            "topk-range",
            "{\"id\": 1000, \"top_logprobs\": {\"0\": -0.1, \"7\": -3}}\n".into(),
            &["--num-classes", "3", "--top-k", "2"],
            "line 1: class 7 is outside [0, 3)",
        ),
        (
            "topk-no-k",
            "{\"id\": 1000, \"top_logprobs\": {\"0\": -0.1}}\n".into(),
            &["--top-k", "1"],
            "--kind topk-log-probs needs the number of classes",
        ),
    ];
    for (name, text, extra, expect) in topk {
        let outputs = tmp.path().join(format!("{name}.jsonl"));
        std::fs::write(&outputs, text).unwrap();
        let args = ["import", "--outputs", s(&outputs), "--data", s(&small), "-T", "1", "--kind", "topk-log-probs"];
        let out = tmp.path().join(name);
        assert_fails(&softlabel(&[&args[..], extra, &["--out", s(&out)]].concat()), expect);
    }
    let o = softlabel(&["import", "--data", s(&small), "-T", "2", "--out", s(&out)]);
    assert_fails(&o, "import needs --outputs FILE");
    let args = ["precompute", "--outputs", s(&outputs), "--data", s(&small), "-T", "2", "--out", s(&out)];
    assert_fails(&softlabel(&args), "--outputs is for `softlabel import`");
}
