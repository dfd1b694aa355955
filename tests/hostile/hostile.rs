//! The hostile-input corpus: soft-label datasets, pipelines, teachers and settings crafted the way an
//! author who wants to hurt the reader would (SCHEMA.md and README, "Trust"). Every case runs the real
//! binary and is checked for: the exit code (1, unless the case says the input is harmless), a message
//! naming the file and what is wrong, no panic, peak memory under [`MEMORY_CAP_MIB`] (the child's
//! maximum resident set, from `wait4`), the [`TIME_LIMIT`], and no file opened or read in a watched
//! folder outside the places the command was given (inotify: `IN_OPEN | IN_ACCESS`).
//!
//! Inputs are made here, from the fixtures (tests/fixtures/make_models.py) and the datasets the test
//! builds first; nothing hostile is committed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, UInt32Type};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, ListArray, RecordBatch, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::common::{copy_dir, fx, reseal};

/// Peak resident memory a case may reach (the good datasets need ~30 MiB; precompute with ONNX Runtime
/// loaded ~100 MiB).
const MEMORY_CAP_MIB: i64 = 400;
/// Wall time a case may take.
const TIME_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Confinement,
    NoHang,
    Memory,
    NoPanic,
    Validation,
    NoDestroy,
    Exclusive,
    Privacy,
}

/// One case's copies of the good inputs, and the watched folder it must not touch.
struct Env {
    tmp: PathBuf,
    dense: PathBuf,
    topk: PathBuf,
    sampled: PathBuf,
    student: PathBuf,
    outside: PathBuf,
}

impl Env {
    fn s(&self, p: &Path) -> String {
        p.to_str().unwrap().to_string()
    }
    fn out(&self) -> String {
        self.s(&self.tmp.join("out"))
    }
    fn pipeline(&self, body: &str) -> String {
        let p = self.tmp.join("p.toml");
        std::fs::write(&p, body).unwrap();
        self.s(&p)
    }
}

type After = Box<dyn Fn(&Env) -> Result<(), String>>;

struct Spec {
    args: Vec<String>,
    /// Substrings stderr must hold.
    expect: Vec<String>,
    /// Substrings stderr must not hold (e.g. a size that would reveal another file).
    reject: Vec<String>,
    code: i32,
    /// Run after the command: what must still hold (an input intact, an output absent).
    after: Option<After>,
    /// An output path this test process holds the writer lock on while the command runs.
    hold_lock: Option<PathBuf>,
}

fn fail(args: Vec<String>, expect: &[&str]) -> Spec {
    Spec {
        args,
        expect: expect.iter().map(|e| e.to_string()).collect(),
        reject: vec![],
        code: 1,
        after: None,
        hold_lock: None,
    }
}

fn a(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// A one-split pipeline over `data` and `model` into `dir`, with `extra` lines in `[student]`.
fn pipeline_body(data: &str, model: &str, dir: &str, extra: &str) -> String {
    format!(
        "[data]\ntrain = \"{data}\"\ntest = \"{data}\"\n[teacher]\nmodel = \"{model}\"\ntemperature = 2.0\n\
         [student]\nhidden = [8]\nepochs = 1\n{extra}\n[output]\ndir = \"{dir}\"\n"
    )
}

/// `eval` of the case's student on the fixture data, with `ds` as the teacher's labels.
fn eval_labels(e: &Env, ds: &Path) -> Vec<String> {
    a(&["eval", "--student", &e.s(&e.student), "--labels", &e.s(ds), "--data", &fx("small.parquet").to_string_lossy()])
}

/// `train` of `ds` into the case's output folder.
fn train(e: &Env, ds: &Path) -> Vec<String> {
    train_with(e, ds, &[])
}

/// `train` of `ds` with `extra` flags (a small, one-epoch student unless they say otherwise).
fn train_with(e: &Env, ds: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = a(&["train", "--labels", &e.s(ds), "--out", &e.out()]);
    for (flag, default) in [("--hidden", "8"), ("--epochs", "1")] {
        if !extra.contains(&flag) {
            v.extend(a(&[flag, default]));
        }
    }
    v.extend(a(extra));
    v
}

fn softlabel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_softlabel"))
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    max_rss_mib: i64,
    secs: f64,
    timed_out: bool,
}

/// Runs the binary with `args`, measuring its peak memory with `wait4` and killing it at the time limit.
/// (The child is reaped by `wait4`, not `Child::wait`, which clippy cannot see.)
#[allow(clippy::zombie_processes)]
fn run_capped(args: &[String]) -> Outcome {
    // A child's ru_maxrss starts at this process's own high-water mark (vfork + exec): the measurement
    // means something only while that mark is far below the cap (tests/hostile/main.rs).
    // SAFETY: zeroed rusage is a valid value for getrusage to fill.
    let mut own: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for this process's own usage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut own) };
    assert!(
        own.ru_maxrss / 1024 < MEMORY_CAP_MIB / 2,
        "this test process reached {} MiB itself: its children's peak memory cannot be told apart",
        own.ru_maxrss / 1024
    );
    let mut child = softlabel()
        .args(args)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // SAFETY: waiting for our own child; status and rusage are valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        if start.elapsed() > TIME_LIMIT {
            timed_out = true;
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut ru);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&reader.join().unwrap()).to_string();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Outcome { code, stderr, max_rss_mib: ru.ru_maxrss / 1024, secs, timed_out }
}

/// inotify on folders: which of their files were opened or read.
struct Watch {
    fd: i32,
}

impl Watch {
    fn new(dirs: &[&Path]) -> Self {
        // SAFETY: plain syscalls on a descriptor we own; paths are NUL-terminated.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        for d in dirs {
            let c = std::ffi::CString::new(d.to_str().unwrap()).unwrap();
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS) };
            assert!(wd >= 0, "inotify_add_watch {}", d.display());
        }
        Watch { fd }
    }

    /// The names of the files touched since the last call.
    fn touched(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: reading into our own buffer.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return names;
            }
            let mut off = 0usize;
            let header = std::mem::size_of::<libc::inotify_event>();
            while off + header <= n as usize {
                // SAFETY: the kernel wrote whole events; read_unaligned copes with the byte buffer.
                let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let name = &buf[off + header..off + header + ev.len as usize];
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                names.push(String::from_utf8_lossy(&name[..end]).into_owned());
                off += header + ev.len as usize;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(self.fd) };
    }
}

// --- crafting parts ---------------------------------------------------------------------------------

fn manifest(ds: &Path) -> softlabel::store::Manifest {
    serde_json::from_str(&std::fs::read_to_string(ds.join("_manifest.json")).unwrap()).unwrap()
}

/// Rewrites part `i` of `ds` through `change` (keeping softlabel's footer metadata) and reseals the
/// manifest with the new part's size, sha256, rows and id range: a consistent, crafted dataset.
fn rewrite_part(ds: &Path, i: usize, change: impl FnOnce(RecordBatch) -> RecordBatch) {
    let mut change = Some(change);
    rewrite_part_in_chunks(ds, i, usize::MAX, move |b| (change.take().unwrap())(b));
}

/// [`rewrite_part`], `change` applied to (and written in) chunks of `chunk` rows, so a part whose
/// columns are large decoded is made without holding it in this process (whose peak memory would
/// otherwise count in the child's: Linux carries a process's high-water mark across `exec`).
fn rewrite_part_in_chunks(ds: &Path, i: usize, chunk: usize, mut change: impl FnMut(RecordBatch) -> RecordBatch) {
    let m = manifest(ds);
    let path = ds.join(&m.parts[i].file);
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
    let kv: Vec<_> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| kv.key != "ARROW:schema")
        .collect();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    let all = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_key_value_metadata(Some(kv))
        .build();
    let mut w = None;
    let mut ids = Vec::new();
    let mut start = 0;
    while start < all.num_rows() {
        let n = chunk.min(all.num_rows() - start);
        let batch = change(all.slice(start, n));
        let writer = w.get_or_insert_with(|| {
            ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), Some(props.clone())).unwrap()
        });
        writer.write(&batch).unwrap();
        writer.flush().unwrap();
        ids.extend(batch.column_by_name("id").unwrap().as_primitive::<Int64Type>().values().iter().map(|&v| v as u64));
        start += n;
    }
    w.unwrap().close().unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let sha = softlabel::util::sha256_file(&path).unwrap();
    reseal(ds, |m| {
        let p = &mut m.parts[i];
        p.bytes = bytes;
        p.sha256 = sha;
        p.rows = ids.len() as u64;
        p.min_id = ids.iter().copied().min().unwrap_or(0);
        p.max_id = ids.iter().copied().max().unwrap_or(0);
        m.rows = m.parts.iter().map(|p| p.rows).sum();
    });
}

/// `batch` with column `name` replaced by `array` (added at the end when absent).
fn set_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    let field = Field::new(name, array.data_type().clone(), array.null_count() > 0);
    match fields.iter().position(|f| f.name() == name) {
        Some(i) => {
            fields[i] = field;
            cols[i] = array;
        }
        None => {
            fields.push(field);
            cols.push(array);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

fn list_f32(batch: &RecordBatch, name: &str) -> (Vec<f32>, usize) {
    let l = batch.column_by_name(name).unwrap().as_fixed_size_list();
    (l.values().as_primitive::<Float32Type>().values().to_vec(), l.value_length() as usize)
}

fn list_u32(batch: &RecordBatch, name: &str) -> (Vec<u32>, usize) {
    let l = batch.column_by_name(name).unwrap().as_fixed_size_list();
    (l.values().as_primitive::<UInt32Type>().values().to_vec(), l.value_length() as usize)
}

fn fsl(values: ArrayRef, width: usize) -> ArrayRef {
    let field = Arc::new(Field::new("item", values.data_type().clone(), false));
    Arc::new(FixedSizeListArray::new(field, width as i32, values, None))
}

fn change_list_f32(batch: RecordBatch, name: &str, f: impl FnOnce(&mut Vec<f32>, usize)) -> RecordBatch {
    let (mut v, w) = list_f32(&batch, name);
    f(&mut v, w);
    set_column(&batch, name, fsl(Arc::new(Float32Array::from(v)), w))
}

fn change_list_u32(batch: RecordBatch, name: &str, f: impl FnOnce(&mut Vec<u32>, usize)) -> RecordBatch {
    let (mut v, w) = list_u32(&batch, name);
    f(&mut v, w);
    set_column(&batch, name, fsl(Arc::new(UInt32Array::from(v)), w))
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", p.display());
}

fn link(target: &Path, at: &Path) {
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(target, at).unwrap();
}

fn part0(ds: &Path) -> PathBuf {
    ds.join("part-00000.parquet")
}

/// `verify DIR` still passes (an input the command must not have damaged).
fn still_verifies(dir: PathBuf) -> After {
    Box::new(move |_| {
        let o = softlabel().arg("verify").arg(&dir).output().unwrap();
        if o.status.success() {
            Ok(())
        } else {
            Err(format!("{} no longer verifies: {}", dir.display(), String::from_utf8_lossy(&o.stderr)))
        }
    })
}

fn absent(p: PathBuf) -> After {
    Box::new(move |_| if p.exists() { Err(format!("{} was written", p.display())) } else { Ok(()) })
}

// --- the corpus -------------------------------------------------------------------------------------

type Make = Box<dyn Fn(&Env) -> Spec>;

fn corpus() -> Vec<(Class, &'static str, Make)> {
    use Class::*;
    let lin = fx("linear.onnx").to_str().unwrap().to_string();
    let small = fx("small.parquet").to_str().unwrap().to_string();
    let pre = move |e: &Env, extra: &[&str]| -> Vec<String> {
        let mut v = a(&["precompute", "--teacher", &lin, "--data", &small, "--temperature", "2", "--out"]);
        v.push(e.out());
        v.extend(a(extra));
        v
    };
    let pre2 = pre.clone();
    let pre3 = pre.clone();
    let pre4 = pre.clone();
    let pre5 = pre.clone();
    let pre6 = pre.clone();
    let pre7 = pre.clone();
    let pre8 = pre.clone();
    let lin2 = fx("linear.onnx").to_str().unwrap().to_string();
    let small2 = fx("small.parquet").to_str().unwrap().to_string();
    let (l3, l4, l5) = (lin2.clone(), lin2.clone(), lin2.clone());
    let (s3, s4, s5, s6) = (small2.clone(), small2.clone(), small2.clone(), small2.clone());

    let cases: Vec<(Class, &'static str, Make)> = vec![
        // --- 1. Confinement: a dataset names only regular files inside its folder; a pipeline stays
        //        under its root.
        (
            Confinement,
            "part is a symlink to another dataset's identical part (train)",
            Box::new(move |e: &Env| {
                link(&part0(&e.outside.join("labels")), &part0(&e.dense));
                fail(train(e, &e.dense), &["part-00000.parquet", "is a symbolic link"])
            }),
        ),
        (
            Confinement,
            "part is a symlink to another dataset's identical part (merge)",
            Box::new(|e: &Env| {
                link(&part0(&e.outside.join("labels")), &part0(&e.dense));
                let mut s = fail(
                    a(&["merge", &e.s(&e.dense), "--out", &e.out()]),
                    &["part-00000.parquet", "is a symbolic link"],
                );
                s.after = Some(absent(e.tmp.join("out/part-00000.parquet")));
                s
            }),
        ),
        (
            Confinement,
            "part is a symlink to a private file (the error reveals nothing of it)",
            Box::new(|e: &Env| {
                link(&e.outside.join("secret.txt"), &part0(&e.dense));
                let mut s = fail(a(&["verify", &e.s(&e.dense)]), &["part-00000.parquet", "is a symbolic link"]);
                s.reject = vec!["bytes".into(), "secret".into()];
                s
            }),
        ),
        (
            Confinement,
            "manifest is a symlink to another dataset's manifest",
            Box::new(|e: &Env| {
                link(&e.outside.join("labels/_manifest.json"), &e.dense.join("_manifest.json"));
                fail(a(&["inspect", &e.s(&e.dense)]), &["_manifest.json", "is a symbolic link"])
            }),
        ),
        (
            Confinement,
            "resealed manifest names a part in another folder",
            Box::new(|e: &Env| {
                let other = e.outside.join("labels/part-00000.parquet");
                let rel = format!("../{}", other.strip_prefix(&e.tmp).unwrap_or(&other).display());
                reseal(&e.dense, |m| m.parts[0].file = rel.clone());
                fail(
                    a(&["train", "--labels", &e.s(&e.dense), "--out", &e.out()]),
                    &["_manifest.json", "is not a part-NNNNN.parquet file name"],
                )
            }),
        ),
        (
            Confinement,
            "resealed manifest names an absolute path",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| m.parts[0].file = "/etc/passwd".into());
                fail(a(&["verify", &e.s(&e.dense)]), &["_manifest.json", "part name '/etc/passwd'"])
            }),
        ),
        (
            Confinement,
            "resealed manifest lists one part twice",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| {
                    let p = m.parts[0].clone();
                    m.parts[1] = p;
                });
                fail(a(&["verify", &e.s(&e.dense)]), &["_manifest.json", "listed twice"])
            }),
        ),
        (
            Confinement,
            "pipeline reads data outside its folder",
            Box::new(move |e: &Env| {
                let p = e.pipeline(&pipeline_body(&small2, &lin2, "out", ""));
                fail(a(&["run", &p]), &["p.toml: [data] train", "lies outside the pipeline's root"])
            }),
        ),
        (
            Confinement,
            "pipeline writes outside its folder",
            Box::new(move |e: &Env| {
                std::fs::copy(&s3, e.tmp.join("d.parquet")).unwrap();
                std::fs::copy(&l3, e.tmp.join("t.onnx")).unwrap();
                let p = e.pipeline(&pipeline_body("d.parquet", "t.onnx", "../../elsewhere", ""));
                fail(a(&["run", &p]), &["p.toml: [output] dir", "lies outside the pipeline's root"])
            }),
        ),
        (
            Confinement,
            "pipeline escapes through a symlink inside its folder",
            Box::new(move |e: &Env| {
                std::fs::copy(&l4, e.tmp.join("t.onnx")).unwrap();
                link(&e.outside, &e.tmp.join("innocent"));
                let p = e.pipeline(&pipeline_body("innocent/secret.txt", "t.onnx", "out", ""));
                fail(a(&["run", &p]), &["p.toml: [data] train", "lies outside the pipeline's root"])
            }),
        ),
        (
            Confinement,
            "pipeline student folder name climbs out",
            Box::new(move |e: &Env| {
                std::fs::copy(&s4, e.tmp.join("d.parquet")).unwrap();
                std::fs::copy(&l5, e.tmp.join("t.onnx")).unwrap();
                let body = pipeline_body("d.parquet", "t.onnx", "out", "")
                    .replace("[output]\n", "[output]\nstudent = \"../../x\"\n");
                let p = e.pipeline(&body);
                fail(a(&["run", &p]), &["p.toml: [output] student", "is not a plain folder name"])
            }),
        ),
        // --- 2. No hangs: FIFOs, devices, endless files.
        (
            NoHang,
            "part is a FIFO (inspect)",
            Box::new(|e: &Env| {
                std::fs::remove_file(part0(&e.dense)).unwrap();
                mkfifo(&part0(&e.dense));
                fail(
                    a(&["inspect", &e.s(&e.dense)]),
                    &["part-00000.parquet", "is a named pipe (FIFO), not a regular file"],
                )
            }),
        ),
        (
            NoHang,
            "manifest is a FIFO (verify)",
            Box::new(|e: &Env| {
                std::fs::remove_file(e.dense.join("_manifest.json")).unwrap();
                mkfifo(&e.dense.join("_manifest.json"));
                fail(a(&["verify", &e.s(&e.dense)]), &["_manifest.json", "is a named pipe (FIFO)"])
            }),
        ),
        (
            NoHang,
            "part is a symlink to /dev/zero (train)",
            Box::new(move |e: &Env| {
                link(Path::new("/dev/zero"), &part0(&e.dense));
                fail(train(e, &e.dense), &["part-00000.parquet", "is a symbolic link"])
            }),
        ),
        (
            NoHang,
            "manifest is a symlink to a FIFO",
            Box::new(|e: &Env| {
                mkfifo(&e.tmp.join("fifo"));
                link(&e.tmp.join("fifo"), &e.dense.join("_manifest.json"));
                fail(eval_labels(e, &e.dense), &["_manifest.json", "is a symbolic link"])
            }),
        ),
        (
            NoHang,
            "manifest larger than any manifest (sparse 100 MiB)",
            Box::new(|e: &Env| {
                let f = File::options().write(true).truncate(true).open(e.dense.join("_manifest.json")).unwrap();
                f.set_len(100 << 20).unwrap();
                fail(
                    a(&["inspect", &e.s(&e.dense)]),
                    &["_manifest.json", "is 104857600 bytes; a manifest is at most 67108864 bytes"],
                )
            }),
        ),
        (
            NoHang,
            "pipeline teacher model is a FIFO",
            Box::new(move |e: &Env| {
                std::fs::copy(&s5, e.tmp.join("d.parquet")).unwrap();
                mkfifo(&e.tmp.join("t.onnx"));
                let p = e.pipeline(&pipeline_body("d.parquet", "t.onnx", "out", ""));
                fail(a(&["run", &p]), &["t.onnx", "is a named pipe (FIFO), not a regular file"])
            }),
        ),
        (
            NoHang,
            "pipeline teacher model is /dev/zero (under an explicit --root /)",
            Box::new(move |e: &Env| {
                std::fs::copy(&s6, e.tmp.join("d.parquet")).unwrap();
                let p = e.pipeline(&pipeline_body("d.parquet", "/dev/zero", "out", ""));
                fail(a(&["run", &p, "--root", "/"]), &["/dev/zero", "is a character device, not a regular file"])
            }),
        ),
        (
            NoHang,
            "precompute --teacher /dev/zero",
            Box::new(|e: &Env| {
                let mut v = a(&[
                    "precompute",
                    "--teacher",
                    "/dev/zero",
                    "--data",
                    &fx("small.parquet").to_string_lossy(),
                    "--temperature",
                    "2",
                    "--out",
                ]);
                v.push(e.out());
                fail(v, &["/dev/zero", "is a character device"])
            }),
        ),
        (
            NoHang,
            "precompute --data is a FIFO",
            Box::new(|e: &Env| {
                mkfifo(&e.tmp.join("data.parquet"));
                let mut v = a(&[
                    "precompute",
                    "--teacher",
                    &fx("linear.onnx").to_string_lossy(),
                    "--data",
                    &e.s(&e.tmp.join("data.parquet")),
                    "--temperature",
                    "2",
                    "--out",
                ]);
                v.push(e.out());
                fail(v, &["data.parquet", "is a named pipe (FIFO)"])
            }),
        ),
        (
            NoHang,
            "crafted page header that made the parquet crate skip forever (batch of 7 rows)",
            Box::new(|e: &Env| {
                let bin =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/hang-page-header-skip.bin");
                let mut v = a(&[
                    "precompute",
                    "--teacher",
                    &fx("linear.onnx").to_string_lossy(),
                    "--data",
                    &e.s(&bin),
                    "--temperature",
                    "2",
                    "--batch-size",
                    "7",
                    "--out",
                ]);
                v.push(e.out());
                fail(v, &["hang-page-header-skip.bin", "keeps reading past the end of the file"])
            }),
        ),
        (
            NoHang,
            "pipeline file of 2 MiB",
            Box::new(|e: &Env| {
                let p = e.tmp.join("p.toml");
                File::create(&p).unwrap().set_len(2 << 20).unwrap();
                fail(a(&["run", &e.s(&p)]), &["p.toml", "a pipeline file is at most 1048576 bytes"])
            }),
        ),
        // --- 3. Bounded memory: nothing sized from a claim before the claim is checked.
        (
            Memory,
            "resealed manifest claims 2^40 rows",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| {
                    m.parts[0].rows = 1 << 40;
                    m.rows = (1 << 40) + m.parts[1].rows;
                });
                fail(
                    a(&["verify", &e.s(&e.dense)]),
                    &["part-00000.parquet", "part has 100 rows, _manifest.json says 1099511627776"],
                )
            }),
        ),
        (
            Memory,
            "resealed manifest claims 2^31 classes",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| m.num_classes = 1 << 31);
                fail(eval_labels(e, &e.dense), &["_manifest.json", "num_classes 2147483648 is not in 1..=16777216"])
            }),
        ),
        (
            Memory,
            "resealed manifest claims 2^20 classes (allowed, but not what the parts hold)",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| m.num_classes = 1 << 20);
                fail(
                    a(&["verify", &e.s(&e.dense)]),
                    &["part-00000.parquet", "column 'logits' has type", "manifest implies FixedSizeList(1048576"],
                )
            }),
        ),
        (
            Memory,
            "resealed input shape whose product overflows",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| m.input.shape = vec![1 << 32, 1 << 32, 4]);
                fail(a(&["inspect", &e.s(&e.dense)]), &["_manifest.json", "does not hold 4 values"])
            }),
        ),
        (
            Memory,
            "resealed views image whose product wraps around to the row width",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| {
                    // 4 * 2^62 * 2^62 wraps to 0 in 64 bits, 2^62 + 1 squared times 4 to 4.
                    let side = (1usize << 62) + 1;
                    m.views = Some(
                        serde_json::from_value(
                            serde_json::json!({"count": 2, "max_shift": 1, "image": [4, side, side], "seed": 0}),
                        )
                        .unwrap(),
                    );
                });
                fail(
                    a(&["verify", &e.s(&e.dense)]),
                    &[
                        "_manifest.json",
                        "views: --image 4x4611686018427387905x4611686018427387905 holds more than 2^64 values",
                    ],
                )
            }),
        ),
        (
            Memory,
            "resealed absurd input width",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| {
                    m.input.width = 1 << 40;
                    m.input.shape = vec![1 << 40];
                });
                fail(
                    a(&["verify", &e.s(&e.dense)]),
                    &["_manifest.json", "input width 1099511627776 is over 67108864 values"],
                )
            }),
        ),
        (
            Memory,
            "extra, highly compressed column (80 MB of zeros in a few KB): never decoded",
            Box::new(|e: &Env| {
                rewrite_part_in_chunks(&e.dense, 0, 1, |b| {
                    let zeros = Arc::new(arrow_array::Int64Array::from(vec![0i64; b.num_rows() * 100_000])) as ArrayRef;
                    set_column(&b, "bomb", fsl(zeros, 100_000))
                });
                let bytes = std::fs::metadata(part0(&e.dense)).unwrap().len();
                assert!(bytes < 2 << 20, "the bomb part is {bytes} bytes");
                let mut s = fail(train(e, &e.dense), &[]);
                s.code = 0;
                s
            }),
        ),
        (
            Memory,
            "train --hidden 100000,100000",
            Box::new(move |e: &Env| {
                fail(
                    train_with(e, &e.dense, &["--hidden", "100000,100000"]),
                    &[
                        "the student MLP 4-100000-100000-3 (ReLU) has 10000900003 parameters; training it needs 186.5 GiB",
                        "more than this machine's",
                    ],
                )
            }),
        ),
        (
            Memory,
            "precompute --sample-k 1000000000",
            Box::new(move |e: &Env| {
                fail(pre(e, &["--sample-k", "1000000000"]), &["--sample-k is 1000000000; at most 65536"])
            }),
        ),
        (
            Memory,
            "precompute --views 65535",
            Box::new(move |e: &Env| fail(pre2(e, &["--views", "65535"]), &["--views is 65535; at most 1024"])),
        ),
        (
            Memory,
            "precompute --threads 100000",
            Box::new(move |e: &Env| fail(pre3(e, &["--threads", "100000"]), &["--threads is 100000; at most 1024"])),
        ),
        (
            Memory,
            "precompute --batch-size 8192 --views 1024",
            Box::new(move |e: &Env| {
                fail(
                    pre4(e, &["--batch-size", "8192", "--views", "1024"]),
                    &["--batch-size 8192 times --views 1024 is 8388608 rows per teacher call; at most 4194304"],
                )
            }),
        ),
        (
            Memory,
            "train --threads 100000",
            Box::new(move |e: &Env| {
                fail(train_with(e, &e.dense, &["--threads", "100000"]), &["--threads is 100000; at most 1024"])
            }),
        ),
        (
            Memory,
            "pipeline hidden = [1000000000]",
            Box::new(|e: &Env| {
                std::fs::copy(fx("small.parquet"), e.tmp.join("d.parquet")).unwrap();
                std::fs::copy(fx("linear.onnx"), e.tmp.join("t.onnx")).unwrap();
                let p = e.pipeline("[data]\ntrain = \"d.parquet\"\ntest = \"d.parquet\"\n[teacher]\nmodel = \"t.onnx\"\ntemperature = 2.0\n[student]\nhidden = [1000000000]\n[output]\ndir = \"out\"\n");
                fail(a(&["run", &p]), &["p.toml: [student] hidden has a layer of 1000000000 units; at most 1048576"])
            }),
        ),
        // --- 4. No panics.
        (
            NoPanic,
            "train --epochs 18446744073709551615",
            Box::new(move |e: &Env| {
                fail(
                    train_with(e, &e.dense, &["--epochs", "18446744073709551615"]),
                    &["--epochs is 18446744073709551615; at most 1000000"],
                )
            }),
        ),
        (
            NoPanic,
            "verify: logits list one wider than num_classes",
            Box::new(|e: &Env| {
                rewrite_part(&e.dense, 0, |b| {
                    let (v, w) = list_f32(&b, "logits");
                    let wider: Vec<f32> = v.chunks(w).flat_map(|r| r.iter().copied().chain([0.0])).collect();
                    set_column(&b, "logits", fsl(Arc::new(Float32Array::from(wider)), w + 1))
                });
                fail(
                    a(&["verify", &e.s(&e.dense)]),
                    &["part-00000.parquet", "column 'logits' has type FixedSizeList(4"],
                )
            }),
        ),
        (
            NoPanic,
            "verify: logits as a variable-length list",
            Box::new(|e: &Env| {
                rewrite_part(&e.dense, 0, |b| {
                    let (v, w) = list_f32(&b, "logits");
                    let offsets = arrow_buffer::OffsetBuffer::from_lengths(std::iter::repeat_n(w, b.num_rows()));
                    let list = ListArray::new(
                        Arc::new(Field::new("item", DataType::Float32, false)),
                        offsets,
                        Arc::new(Float32Array::from(v)),
                        None,
                    );
                    set_column(&b, "logits", Arc::new(list))
                });
                fail(a(&["verify", &e.s(&e.dense)]), &["part-00000.parquet", "column 'logits' has type List"])
            }),
        ),
        (
            NoPanic,
            "train: labels column of strings",
            Box::new(move |e: &Env| {
                rewrite_part(&e.dense, 1, |b| {
                    let labels = arrow_array::StringArray::from(vec!["x"; b.num_rows()]);
                    set_column(&b, "label", Arc::new(labels))
                });
                fail(train(e, &e.dense), &["part-00001.parquet", "column 'label' has type Utf8"])
            }),
        ),
        (
            NoPanic,
            "verify: a part with no columns softlabel knows",
            Box::new(|e: &Env| {
                rewrite_part(&e.dense, 0, |b| {
                    let id = b.column_by_name("id").unwrap().clone();
                    RecordBatch::try_new(
                        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
                        vec![id],
                    )
                    .unwrap()
                });
                fail(a(&["verify", &e.s(&e.dense)]), &["part-00000.parquet", "no column 'label'"])
            }),
        ),
        // --- 5. Every reader validates what verify validates.
        (
            Validation,
            "duplicate ids across parts (train)",
            Box::new(move |e: &Env| {
                let ids0 = {
                    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(part0(&e.dense)).unwrap())
                        .unwrap()
                        .build()
                        .unwrap()
                        .next()
                        .unwrap()
                        .unwrap();
                    b.column_by_name("id").unwrap().clone()
                };
                rewrite_part(&e.dense, 1, |b| set_column(&b, "id", ids0.slice(0, b.num_rows())));
                fail(
                    train(e, &e.dense),
                    &[
                        "part-00001.parquet",
                        "column 'id', row 0: duplicate id 1000, also in",
                        "part-00000.parquet row 0",
                    ],
                )
            }),
        ),
        (
            Validation,
            "duplicate ids across parts (eval --labels)",
            Box::new(|e: &Env| {
                rewrite_part(&e.dense, 1, |b| {
                    let ids: Vec<i64> =
                        (0..b.num_rows() as i64).map(|i| if i == 5 { 1007 } else { 5000 + i }).collect();
                    set_column(&b, "id", Arc::new(arrow_array::Int64Array::from(ids)))
                });
                fail(
                    eval_labels(e, &e.dense),
                    &[
                        "part-00001.parquet",
                        "column 'id', row 5: duplicate id 1007, also in",
                        "part-00000.parquet row 7",
                    ],
                )
            }),
        ),
        (
            Validation,
            "id outside its part's recorded range",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| m.parts[1].max_id = m.parts[1].min_id + 3);
                fail(a(&["inspect", &e.s(&e.dense)]), &["part-00001.parquet", "outside the manifest's range"])
            }),
        ),
        (
            Validation,
            "labeled_rows absurd",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| m.labeled_rows = 150);
                fail(
                    a(&["verify", &e.s(&e.dense)]),
                    &["_manifest.json", "labeled_rows is 150, the parts hold 200 rows with a label"],
                )
            }),
        ),
        (
            Validation,
            "labeled_rows above rows",
            Box::new(|e: &Env| {
                reseal(&e.dense, |m| m.labeled_rows = u64::MAX);
                fail(a(&["verify", &e.s(&e.dense)]), &["_manifest.json", "is more than rows 200"])
            }),
        ),
        (
            Validation,
            "top-k: a class twice in a row (train)",
            Box::new(move |e: &Env| {
                rewrite_part(&e.topk, 0, |b| change_list_u32(b, "topk_index", |v, w| v[3 * w + 1] = v[3 * w]));
                fail(train(e, &e.topk), &["part-00000.parquet", "column 'topk_index', row 3: class", "appears twice"])
            }),
        ),
        (
            Validation,
            "top-k: a logit above logsumexp_t (probability over 1; verify)",
            Box::new(|e: &Env| {
                rewrite_part(&e.topk, 0, |b| {
                    let lse = b.column_by_name("logsumexp_t").unwrap().as_primitive::<Float64Type>();
                    let v: Vec<f64> =
                        lse.values().iter().enumerate().map(|(i, &x)| if i == 2 { x - 5.0 } else { x }).collect();
                    set_column(&b, "logsumexp_t", Arc::new(Float64Array::from(v)))
                });
                fail(
                    a(&["verify", &e.s(&e.topk)]),
                    &["part-00000.parquet", "column 'topk_logit', row 2: the top-k probabilities sum to"],
                )
            }),
        ),
        (
            Validation,
            "top-k: logits not descending (train)",
            Box::new(move |e: &Env| {
                rewrite_part(&e.topk, 1, |b| change_list_f32(b, "topk_logit", |v, w| v[w..2 * w].reverse()));
                fail(
                    train(e, &e.topk),
                    &["part-00001.parquet", "column 'topk_logit', row 1: logits are not in descending order"],
                )
            }),
        ),
        (
            Validation,
            "top-k: logsumexp_t is NaN",
            Box::new(|e: &Env| {
                rewrite_part(&e.topk, 0, |b| {
                    let mut v =
                        b.column_by_name("logsumexp_t").unwrap().as_primitive::<Float64Type>().values().to_vec();
                    v[9] = f64::NAN;
                    set_column(&b, "logsumexp_t", Arc::new(Float64Array::from(v)))
                });
                fail(
                    a(&["verify", &e.s(&e.topk)]),
                    &["part-00000.parquet", "column 'logsumexp_t', row 9: NaN is not finite"],
                )
            }),
        ),
        (
            Validation,
            "sampled: draws not ascending (train)",
            Box::new(move |e: &Env| {
                rewrite_part(&e.sampled, 0, |b| {
                    change_list_u32(b, "sample_index", |v, w| {
                        let row = (0..v.len() / w).find(|r| v[r * w] != v[r * w + w - 1]).unwrap();
                        v[row * w..(row + 1) * w].reverse();
                    })
                });
                fail(
                    train(e, &e.sampled),
                    &["part-00000.parquet", "column 'sample_index', row", "draws are not in ascending order"],
                )
            }),
        ),
        (
            Validation,
            "dense: a row of all -inf logits (train names the row, not 'diverged')",
            Box::new(move |e: &Env| {
                rewrite_part(&e.dense, 1, |b| {
                    change_list_f32(b, "logits", |v, w| v[4 * w..5 * w].fill(f32::NEG_INFINITY))
                });
                let mut s =
                    fail(train(e, &e.dense), &["part-00001.parquet", "column 'logits', row 4: every logit is -inf"]);
                s.reject = vec!["diverged".into()];
                s
            }),
        ),
        (
            Validation,
            "dense: a NaN logit (eval --labels)",
            Box::new(|e: &Env| {
                rewrite_part(&e.dense, 0, |b| change_list_f32(b, "logits", |v, w| v[6 * w + 1] = f32::NAN));
                fail(eval_labels(e, &e.dense), &["part-00000.parquet", "column 'logits', row 6: value 1 is NaN"])
            }),
        ),
        // --- 6. Never destroy data.
        (
            NoDestroy,
            "merge --overwrite --out A A B",
            Box::new(|e: &Env| {
                let mut s = fail(
                    a(&["merge", "--overwrite", "--out", &e.s(&e.dense), &e.s(&e.dense), &e.s(&e.topk)]),
                    &["--out", "is the input", "could destroy"],
                );
                s.after = Some(still_verifies(e.dense.clone()));
                s
            }),
        ),
        (
            NoDestroy,
            "merge --out inside an input",
            Box::new(|e: &Env| {
                let mut s = fail(
                    a(&["merge", "--overwrite", "--out", &e.s(&e.dense.join("merged")), &e.s(&e.dense)]),
                    &["--out", "lies inside the input"],
                );
                s.after = Some(still_verifies(e.dense.clone()));
                s
            }),
        ),
        (
            NoDestroy,
            "merge --out is a folder holding an input",
            Box::new(|e: &Env| {
                let mut s = fail(
                    a(&["merge", "--overwrite", "--out", &e.s(&e.tmp), &e.s(&e.dense)]),
                    &["--out", "contains the input"],
                );
                s.after = Some(still_verifies(e.dense.clone()));
                s
            }),
        ),
        (
            NoDestroy,
            "precompute --overwrite --out is the data folder",
            Box::new(|e: &Env| {
                let data = e.tmp.join("data");
                copy_dir(&fx("small_dir"), &data);
                let v = a(&[
                    "precompute",
                    "--overwrite",
                    "--teacher",
                    &fx("linear.onnx").to_string_lossy(),
                    "--data",
                    &e.s(&data),
                    "--temperature",
                    "2",
                    "--out",
                    &e.s(&data),
                ]);
                let mut s = fail(v, &["--out", "is the input"]);
                let n = std::fs::read_dir(&data).unwrap().count();
                s.after = Some(Box::new(move |e: &Env| {
                    let now = std::fs::read_dir(e.tmp.join("data")).unwrap().count();
                    if now == n {
                        Ok(())
                    } else {
                        Err(format!("data folder went from {n} to {now} files"))
                    }
                }));
                s
            }),
        ),
        (
            NoDestroy,
            "train --out is the labels folder",
            Box::new(|e: &Env| {
                let mut s = fail(
                    a(&["train", "--labels", &e.s(&e.dense), "--out", &e.s(&e.dense)]),
                    &["--out", "is the input"],
                );
                s.after = Some(still_verifies(e.dense.clone()));
                s
            }),
        ),
        (
            NoDestroy,
            "export over the student's own weights",
            Box::new(|e: &Env| {
                let mut s = fail(
                    a(&["export", "--student", &e.s(&e.student), "--out", &e.s(&e.student.join("student.onnx"))]),
                    &["student.safetensors, the student's own file"],
                );
                s.after = Some(Box::new(|e: &Env| {
                    let o = softlabel()
                        .args(["eval", "--student", &e.s(&e.student), "--data", &fx("small.parquet").to_string_lossy()])
                        .output()
                        .unwrap();
                    if o.status.success() {
                        Ok(())
                    } else {
                        Err(format!("student damaged: {}", String::from_utf8_lossy(&o.stderr)))
                    }
                }));
                s
            }),
        ),
        // --- 7. Exclusive writers.
        (
            Exclusive,
            "precompute while another writer holds the output",
            Box::new(move |e: &Env| {
                let mut s =
                    fail(pre5(e, &[]), &["out is being written by pid", &format!("pid {}", std::process::id())]);
                s.hold_lock = Some(e.tmp.join("out"));
                s.after = Some(absent(e.tmp.join("out/part-00000.parquet")));
                s
            }),
        ),
        (
            Exclusive,
            "train while another writer holds the student folder",
            Box::new(move |e: &Env| {
                let mut s = fail(train(e, &e.dense), &["is being written by pid"]);
                s.hold_lock = Some(e.tmp.join("out"));
                s.after = Some(absent(e.tmp.join("out/student.json")));
                s
            }),
        ),
        (
            Exclusive,
            "merge while another writer holds the output",
            Box::new(|e: &Env| {
                let mut s = fail(a(&["merge", &e.s(&e.dense), "--out", &e.out()]), &["is being written by pid"]);
                s.hold_lock = Some(e.tmp.join("out"));
                s
            }),
        ),
        (
            Exclusive,
            "a stale lock file from a dead process is taken over",
            Box::new(move |e: &Env| {
                std::fs::write(e.tmp.join(".out.lock"), "pid 999999 on a-dead-host").unwrap();
                let mut s = fail(pre6(e, &[]), &[]);
                s.code = 0;
                s.after = Some(still_verifies(e.tmp.join("out")));
                s
            }),
        ),
        // --- 8. Privacy.
        (
            Privacy,
            "the manifest records file names, not the producer's folders",
            Box::new(move |e: &Env| {
                let mut s = fail(pre7(e, &[]), &[]);
                s.code = 0;
                s.after = Some(Box::new(|e: &Env| {
                    let text = std::fs::read_to_string(e.tmp.join("out/_manifest.json")).unwrap();
                    let fixtures = crate::common::fixtures();
                    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let files = &m["source"]["files"];
                    if text.contains(fixtures.to_str().unwrap()) || files[0]["path"] != "small.parquet" {
                        Err(format!("manifest leaks a path: {files}"))
                    } else {
                        Ok(())
                    }
                }));
                s
            }),
        ),
        (
            Privacy,
            "the part metadata records no folder either",
            Box::new(move |e: &Env| {
                let mut s = fail(pre8(e, &[]), &[]);
                s.code = 0;
                s.after = Some(Box::new(|e: &Env| {
                    let bytes = std::fs::read(e.tmp.join("out/part-00000.parquet")).unwrap();
                    let needle = crate::common::fixtures().to_str().unwrap().as_bytes().to_vec();
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        Err("the part's footer holds the data folder".into())
                    } else {
                        Ok(())
                    }
                }));
                s
            }),
        ),
    ];
    cases
}

fn build(args: &[&str]) {
    let o = softlabel().args(args).arg("--quiet").output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn hostile_inputs_are_refused_within_bounds_without_reading_elsewhere() {
    let root = tempfile::tempdir().unwrap();
    let r = |n: &str| root.path().join(n).to_str().unwrap().to_string();
    let (lin, small) = (fx("linear.onnx"), fx("small.parquet"));
    let (lin, small) = (lin.to_str().unwrap(), small.to_str().unwrap());
    let pre = ["precompute", "--teacher", lin, "--data", small, "--temperature", "2", "--rows-per-part", "100"];
    build(&[&pre[..], &["--out", &r("dense")]].concat());
    build(&[&pre[..], &["--out", &r("topk"), "--top-k", "2"]].concat());
    build(&[&pre[..], &["--out", &r("sampled"), "--sample-k", "4"]].concat());
    build(&["train", "--labels", &r("dense"), "--out", &r("student"), "--hidden", "8", "--epochs", "1"]);
    // The folder no case may touch: another team's dataset and a private file.
    let outside = root.path().join("outside");
    copy_dir(&root.path().join("dense"), &outside.join("labels"));
    std::fs::write(outside.join("secret.txt"), "a private file, 42 bytes long............").unwrap();
    let watch = Watch::new(&[&outside, &outside.join("labels")]);
    // The watch sees a read (so an empty list below means something).
    Command::new("cat").arg(outside.join("secret.txt")).output().unwrap();
    assert_eq!(watch.touched().first().map(String::as_str), Some("secret.txt"), "inotify sees no reads");

    let cases = corpus();
    let mut failures = Vec::new();
    for (i, (class, name, make)) in cases.iter().enumerate() {
        let tmp = root.path().join(format!("case{i:02}"));
        let e = Env {
            dense: tmp.join("dense"),
            topk: tmp.join("topk"),
            sampled: tmp.join("sampled"),
            student: tmp.join("student"),
            outside: outside.clone(),
            tmp: tmp.clone(),
        };
        for (from, to) in [("dense", &e.dense), ("topk", &e.topk), ("sampled", &e.sampled), ("student", &e.student)] {
            copy_dir(&root.path().join(from), to);
        }
        let spec = make(&e);
        let lock = spec.hold_lock.as_ref().map(|p| softlabel::util::OutputLock::acquire(p).unwrap());
        watch.touched();
        let o = run_capped(&spec.args);
        let touched = watch.touched();
        drop(lock);
        let mut problems = Vec::new();
        if o.timed_out {
            problems.push(format!("still running after {TIME_LIMIT:?}"));
        } else if o.code != Some(spec.code) {
            problems.push(format!("exit {:?}, expected {}", o.code, spec.code));
        }
        for want in &spec.expect {
            if !o.stderr.contains(want.as_str()) {
                problems.push(format!("stderr lacks {want:?}"));
            }
        }
        for bad in &spec.reject {
            if o.stderr.contains(bad.as_str()) {
                problems.push(format!("stderr holds {bad:?}"));
            }
        }
        if spec.code == 1 && o.stderr.trim().lines().count() != 1 {
            problems.push("not one error line".into());
        }
        if o.stderr.contains("panicked") {
            problems.push("panicked".into());
        }
        if o.max_rss_mib > MEMORY_CAP_MIB {
            problems.push(format!("peak memory {} MiB over the {MEMORY_CAP_MIB} MiB cap", o.max_rss_mib));
        }
        if !touched.is_empty() {
            problems.push(format!("opened or read outside the named places: {touched:?}"));
        }
        if let Some(after) = &spec.after {
            if let Err(e) = after(&e) {
                problems.push(e);
            }
        }
        println!(
            "[{class:?}] {name}: {} ({:.2}s, {} MiB)",
            if problems.is_empty() { "ok".to_string() } else { problems.join("; ") },
            o.secs,
            o.max_rss_mib
        );
        if !problems.is_empty() {
            failures.push(format!("[{class:?}] {name}: {}\n    stderr: {}", problems.join("; "), o.stderr.trim()));
        }
    }
    assert!(cases.len() >= 40, "the corpus must hold at least 40 cases, has {}", cases.len());
    for class in [
        Class::Confinement,
        Class::NoHang,
        Class::Memory,
        Class::NoPanic,
        Class::Validation,
        Class::NoDestroy,
        Class::Exclusive,
        Class::Privacy,
    ] {
        assert!(cases.iter().any(|c| c.0 == class), "no {class:?} case");
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
