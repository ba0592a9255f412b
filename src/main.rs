//! `cloudlb`: parse flags, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use cloudlb::args::{Cli, Command};
use cloudlb::{app, demo, logging};

/// glibc's malloc gives threads that allocate at once arenas of their own, up to eight per core,
/// and memory freed in one arena is not reused by another: a burst of reconciles spread over the
/// runtime's threads leaves each arena holding its own high-water mark. Two arenas measured
/// about 2 MiB less peak RSS with 10,000 load balancers (benches/README.md) at no measurable
/// cost in throughput; the runtime has one worker thread per core and this is a controller,
/// not an allocator benchmark.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets a tuning parameter of glibc's allocator; it is called before
    // any thread is started, and an unsupported value is refused with a return value of 0.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    // Both the AWS and Google SDKs use aws-lc-rs; rustls panics if two providers are compiled in
    // and none is chosen, so choose one before any client is built.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Run(a) => a.controller.log_format,
        Command::Sandbox(a) => a.controller.log_format,
        Command::Gc(a) => a.run.controller.log_format,
        Command::Plan(a) => a.run.controller.log_format,
    };
    logging::init(format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => app::run(args).await,
            Command::Sandbox(args) => demo::sandbox(args).await,
            Command::Gc(args) => cloudlb::gc::run(args).await,
            Command::Plan(args) => cloudlb::plan::run(args).await,
        }
    });
    // Tasks still running are dropped; a blocking one (a file write, a DNS lookup) must not hold
    // the exit either: a leader that lost its lease has to be gone promptly.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let text = s.to_string();
                if !msg.contains(&text) {
                    msg.push_str(&format!(": {text}"));
                }
                source = s.source();
            }
            tracing::error!("{msg}");
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
