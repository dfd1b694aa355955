//! Finding and loading the ONNX Runtime shared library (`ort`'s `load-dynamic`), in this order: an
//! explicit path (`--ort-lib`), the `ORT_DYLIB_PATH` environment variable, the `.ort/` folder that
//! `make setup` fills, and finally an installed `onnxruntime` Python package.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::error::{Error, Result};

/// The unversioned and versioned names the library goes by in the `onnxruntime` wheel.
const LIB_PREFIX: &str = "libonnxruntime.so";

static ENVIRONMENT: OnceLock<std::result::Result<(PathBuf, Environment), String>> = OnceLock::new();

/// Finds the ONNX Runtime shared library; see the module docs for the order.
pub fn find_ort_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::Runtime(format!("--ort-lib {}: no such file", p.display())))
        };
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Runtime(format!(
                "ORT_DYLIB_PATH={}: no such file; point it at libonnxruntime.so.<version> (from `pip install \
                 onnxruntime`, in .../onnxruntime/capi/), or unset it to use the library `make setup` links",
                p.display()
            )))
        };
    }
    let mut tried = Vec::new();
    for dir in setup_dirs() {
        let candidate = dir.join(".ort").join(LIB_PREFIX);
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    match python_package_library() {
        Some(p) => Ok(p),
        None => {
            tried.push("the onnxruntime Python package (python3 -c 'import onnxruntime')".into());
            Err(Error::Runtime(format!(
                "ONNX Runtime shared library not found (tried: {}). Run `make setup` in the softlabel \
                 checkout, or `pip install onnxruntime` and pass --ort-lib \
                 .../site-packages/onnxruntime/capi/libonnxruntime.so.<version>, or set ORT_DYLIB_PATH",
                tried.join(", ")
            )))
        }
    }
}

/// Folders where `make setup` may have put `.ort/`: the checkout this binary was built from, found from
/// the executable's location (target/<profile>/[deps/]) and from the build-time manifest dir.
fn setup_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dirs.dedup();
    dirs
}

fn python_package_library() -> Option<PathBuf> {
    let mut pythons = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(PathBuf::from(venv).join("bin").join("python"));
    }
    pythons.push(PathBuf::from("python3"));
    for py in pythons {
        let out = std::process::Command::new(&py)
            .args(["-c", "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            continue;
        }
        let capi = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
        let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(LIB_PREFIX)))
            .collect();
        libs.sort();
        if let Some(lib) = libs.pop() {
            return Some(lib);
        }
    }
    None
}

/// Loads ONNX Runtime once per process and returns its environment. ONNX Runtime 1.32 reads
/// `ORT_DISABLE_TELEMETRY` as it loads: the `softlabel` command sets it to 1 at start-up unless the user
/// set it (src/main.rs); a program embedding the library sets it itself, before its threads start.
pub fn environment(ort_lib: Option<&Path>) -> Result<&'static Environment> {
    let entry = ENVIRONMENT.get_or_init(|| {
        let path = find_ort_library(ort_lib).map_err(|e| e.to_string())?;
        let env = ort::init_from(&path)
            .map_err(|e| format!("{}: cannot load ONNX Runtime: {e}", path.display()))?
            .with_name("softlabel")
            .build()
            .map_err(|e| format!("{}: cannot start ONNX Runtime: {e}", path.display()))?;
        tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
        Ok((path, env))
    });
    match entry {
        Ok((_, env)) => Ok(env),
        Err(e) => Err(Error::Runtime(e.clone())),
    }
}

/// The path ONNX Runtime was loaded from, once [`environment`] succeeded.
pub fn loaded_library() -> Option<&'static Path> {
    ENVIRONMENT.get().and_then(|r| r.as_ref().ok()).map(|(p, _)| p.as_path())
}
