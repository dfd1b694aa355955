//! The `softlabel` command: parse, set up logging, dispatch, map errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A file-size limit (ulimit -f) must surface as a write error naming the file, not kill the process:
    // the error path then removes the unfinished part. SIG_IGN on SIGXFSZ makes write() return EFBIG.
    // SAFETY: setting a signal's disposition to SIG_IGN at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // ONNX Runtime 1.32's telemetry (Microsoft's 1DS: a usage database and device id under
    // ~/.cache/Microsoft/DeveloperTools, two more threads, HTTPS uploads where a network is reachable)
    // is off unless the user asked for it: a run writes nothing outside its output and sends nothing.
    // Set here, before any thread exists (setenv is not thread-safe); the runtime reads it when loaded.
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
    // A decoder's panic on a crafted file is reported as that file's error, not printed as a crash.
    softlabel::util::quiet_guarded_panics();
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    cli::init_logging(args.verbose, args.quiet);
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            let code = err.downcast_ref::<softlabel::Error>().map_or(2, softlabel::Error::exit_code);
            ExitCode::from(code as u8)
        }
    }
}
