//! `gce-fake`: the fake Compute API as a process a person or a script can start.
//!
//! ```text
//! gce-fake --port 8089 --project demo [--region us-central1] [--zones us-central1-a,us-central1-b]
//!          [--op-delay-polls 1] [--settle-after-ms 2000] [--in-use sync|in-operation]
//!          [--fault-rate 0.3] [--fault-in-op-share 0.5] [--seed N]
//!          [--external-cidrs 203.0.113.0/24] [--global-cidrs 198.51.100.0/24] [--internal-cidrs 10.128.0.0/16]
//!          [--instances us-central1-a/node-1,us-central1-b/node-2]
//! ```
//! It prints `gce-fake listening on http://127.0.0.1:PORT (project P, region R)` once serving, and
//! stops on Ctrl-C / SIGTERM.

use clap::Parser;
use cloudlb_gce_fake::{Delivery, FakeConfig, GceFake, InstanceSpec};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "gce-fake", about = "A fake Google Compute Engine REST API (load-balancing collections) on 127.0.0.1")]
struct Args {
    /// Port on 127.0.0.1 (0 = a free one; the chosen port is printed).
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// The project served.
    #[arg(long)]
    project: String,
    #[arg(long, default_value = "us-central1")]
    region: String,
    /// Comma-separated zones (default: REGION-a, -b, -c).
    #[arg(long, value_delimiter = ',')]
    zones: Vec<String>,
    /// Polls an operation stays RUNNING before DONE (0 = DONE at once).
    #[arg(long, default_value_t = 1)]
    op_delay_polls: u32,
    /// An unpolled operation completes after this many milliseconds (0 = only when polled).
    #[arg(long, default_value_t = 2000)]
    settle_after_ms: u64,
    /// How in-use errors of deletes are delivered.
    #[arg(long, value_enum, default_value_t = InUse::Sync)]
    in_use: InUse,
    /// Fraction of API calls (except operation polls) failing with 403 rate-limit, 429, 500 or 503.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Of failing mutations, the fraction reported inside the operation instead of synchronously.
    #[arg(long, default_value_t = 0.5)]
    fault_in_op_share: f64,
    /// Seed of the fault random generator.
    #[arg(long, default_value_t = 0x00c1_0ad1_b000)]
    seed: u64,
    /// Regional external address pool (comma-separated CIDRs).
    #[arg(long)]
    external_cidrs: Option<String>,
    /// Global external address pool.
    #[arg(long)]
    global_cidrs: Option<String>,
    /// Internal address pool (ILB addresses and instance IPs).
    #[arg(long)]
    internal_cidrs: Option<String>,
    /// Instances to seed, as zone/name (comma-separated).
    #[arg(long, value_delimiter = ',')]
    instances: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum InUse {
    Sync,
    InOperation,
}

fn config(args: &Args) -> Result<FakeConfig, String> {
    let mut c = FakeConfig::new(&args.project).with_region(&args.region);
    if !args.zones.is_empty() {
        c.zones = args.zones.clone();
    }
    c.bind = SocketAddr::from(([127, 0, 0, 1], args.port));
    c.op_delay_polls = args.op_delay_polls;
    c.settle_after = (args.settle_after_ms > 0).then(|| Duration::from_millis(args.settle_after_ms));
    c.in_use = match args.in_use {
        InUse::Sync => Delivery::Sync,
        InUse::InOperation => Delivery::InOperation,
    };
    if !(0.0..=1.0).contains(&args.fault_rate) || !(0.0..=1.0).contains(&args.fault_in_op_share) {
        return Err("--fault-rate and --fault-in-op-share must be between 0 and 1".into());
    }
    c = c.with_random_faults(args.fault_rate, args.fault_in_op_share);
    c.seed = args.seed;
    let pool = |flag: &str, v: &Option<String>| -> Result<Option<Vec<ipnet::Ipv4Net>>, String> {
        v.as_deref().map(|s| cloudlb_gce_fake::parse_cidrs(s).map_err(|e| format!("{flag}: {e}"))).transpose()
    };
    if let Some(p) = pool("--external-cidrs", &args.external_cidrs)? {
        c.pools.external_regional = p;
    }
    if let Some(p) = pool("--global-cidrs", &args.global_cidrs)? {
        c.pools.external_global = p;
    }
    if let Some(p) = pool("--internal-cidrs", &args.internal_cidrs)? {
        c.pools.internal = p;
    }
    Ok(c)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gce-fake: {e}");
            return ExitCode::from(2);
        }
    };
    let fake = match GceFake::start(cfg).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gce-fake: {e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default());
            return ExitCode::from(1);
        }
    };
    for item in &args.instances {
        let Some((zone, name)) = item.split_once('/') else {
            eprintln!("gce-fake: --instances wants zone/name, got {item:?}");
            return ExitCode::from(2);
        };
        if let Err(e) = fake.add_instance(InstanceSpec::new(zone, name)) {
            eprintln!("gce-fake: seeding {item}: {e}");
            return ExitCode::from(2);
        }
    }
    println!("gce-fake listening on {} (project {}, region {})", fake.url(), fake.project(), fake.region());
    wait_for_signal().await;
    fake.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
