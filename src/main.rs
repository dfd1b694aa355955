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
    // Batches of several MB are allocated and freed thousands of times; glibc would mmap and munmap
    // each one, paying a page fault per 4 KiB page every time. Keeping them on the heap (freed memory is
    // reused, and returned to the system above 256 MiB of free space) cut precompute's system time by
    // ~4x (measured in BENCHMARKS.md).
    // SAFETY: mallopt only sets allocator parameters; called before any allocation-heavy work or thread.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
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
