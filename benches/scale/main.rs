//! `cargo bench --bench scale [-- --services 1000,10000 --ingresses 1000,10000 --latency-ms 50 --concurrency 64]`
//!
//! Drives the real `cloudlb` binary (built by cargo for this bench, release profile) against
//! the sandbox Kubernetes API with the memory provider, and prints a markdown table per
//! scenario. See benches/README.md for the scenarios and the recorded results.

mod scenarios;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use scenarios::{Front, Params};

struct Args {
    services: Vec<usize>,
    /// The sizes of the Ingress runs; `--services`' when not given, so that `--services ''`
    /// still means "no scale runs".
    ingresses: Vec<usize>,
    nodes: usize,
    latency: Duration,
    concurrency: u16,
    latency_samples: usize,
    /// (LB Services, other Services, Nodes) per footprint run.
    footprints: Vec<(usize, usize, usize)>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        services: vec![1000, 10000],
        ingresses: vec![1000, 10000],
        nodes: 10,
        latency: Duration::from_millis(50),
        concurrency: 64,
        latency_samples: 200,
        footprints: vec![(10_000, 10_000, 1_000), (1_000, 0, 10)],
    };
    let mut footprints = Vec::new();
    let mut ingresses = None;
    let argv: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        let list = |v: String| {
            v.split(',').filter(|v| !v.is_empty()).map(|v| num(v.to_string())).collect::<Result<Vec<usize>, String>>()
        };
        match flag.as_str() {
            "--services" => a.services = list(value()?)?,
            "--ingresses" => ingresses = Some(list(value()?)?),
            "--nodes" => a.nodes = num(value()?)?,
            "--latency-ms" => a.latency = Duration::from_millis(num(value()?)? as u64),
            "--concurrency" => a.concurrency = num(value()?)?.clamp(1, 4096) as u16,
            "--latency-samples" => a.latency_samples = num(value()?)?,
            "--footprint" => {
                let v: Vec<usize> = value()?.split(',').map(|v| num(v.to_string())).collect::<Result<_, _>>()?;
                let [lb, other, nodes] = v[..] else { return Err("--footprint takes LB,OTHER,NODES".into()) };
                footprints.push((lb, other, nodes));
            }
            "--no-footprint" => footprints.push((0, 0, 0)),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    a.ingresses = ingresses.unwrap_or_else(|| a.services.clone());
    if !footprints.is_empty() {
        a.footprints = footprints.into_iter().filter(|&(lb, _, _)| lb > 0).collect();
    }
    Ok(a)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let lat = args.latency.as_millis();
    for (front, ns) in [(Front::Services, &args.services), (Front::Ingresses, &args.ingresses)] {
        if !ns.is_empty() {
            scale_tables(&args, front, ns).await;
        }
    }
    if args.latency_samples > 0 {
        let l = scenarios::latency(args.latency_samples).await;
        println!("\n## One Service, provider latency 0: create to EXTERNAL-IP seen ({} samples)\n", l.samples);
        println!("| p50 | p99 |\n|---|---|\n| {} | {} |", ms(l.p50), ms(l.p99));
    }
    if !args.footprints.is_empty() {
        println!("\n## Footprint ({lat} ms per call)\n");
        println!("{}\n", link_order_coverage());
        println!(
            "| LB Services | other Services | Nodes | converged | peak RSS | peak anonymous | peak file-backed | CPU seconds |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }
    for &(lb, other, nodes) in &args.footprints {
        let f = scenarios::footprint(lb, other, nodes, args.latency).await;
        println!(
            "| {lb} | {other} | {nodes} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} |",
            s(f.converge),
            f.peak_rss_mib,
            f.peak_anon_mib,
            f.peak_file_mib,
            f.cpu_seconds
        );
    }
}

/// Scenarios 1–4 for each N: the times table, then the API writes table.
async fn scale_tables(args: &Args, front: Front, ns: &[usize]) {
    let lat = args.latency.as_millis();
    let what = front.plural();
    println!(
        "## Scale: {what} (memory provider, {lat} ms per call, {} nodes, --concurrency {})\n",
        args.nodes, args.concurrency
    );
    println!(
        "| N | converged | {what}/s | create-to-status p50 | p99 | restart: mutating calls | restart: caught up | add node: calls | add node: time | exclude node: calls | exclude node: time | delete all | API requests |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut writes = Vec::new();
    for &n in ns {
        let p = Params { front, n, nodes: args.nodes, latency: args.latency, concurrency: args.concurrency };
        let r = scenarios::scale(&p).await;
        println!(
            "| {n} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s(r.converge),
            n as f64 / r.converge.as_secs_f64(),
            ms(r.create_p50),
            ms(r.create_p99),
            r.restart_mutating_calls,
            s(r.restart_catch_up),
            r.add_node_calls,
            s(r.add_node_time),
            r.exclude_node_calls,
            s(r.exclude_node_time),
            s(r.delete_all),
            r.api_requests
        );
        writes.push((n, r));
    }
    println!("\n## API writes by the controller for {what} ({} patches / status patches / events)\n", front.kind());
    println!("| N | per new LB | restart (total) | add node (total) | exclude node (total) | per deleted LB |");
    println!("|---|---|---|---|---|---|");
    for (n, r) in &writes {
        let total = |w: &scenarios::Writes| format!("{}/{}/{}", w.objects, w.status, w.events);
        println!(
            "| {n} | {} | {} | {} | {} | {} |",
            r.create_writes.per(*n),
            total(&r.restart_writes),
            total(&r.add_node_writes),
            total(&r.exclude_node_writes),
            r.delete_writes.per(*n)
        );
    }
}

/// How much of `link/cloudlb.order` (the functions LLD lays out first, see build.rs) the binary
/// under test still defines: the footprint depends on it, and a low share says the list is
/// stale (run `link/order.sh`).
fn link_order_coverage() -> String {
    let binary = support::cloudlb_binary();
    let listed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/link/cloudlb.order")).unwrap_or_default();
    let nm = match std::process::Command::new("nm").args(["--defined-only", &binary]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return "Link order: not known (nm failed)".into(),
    };
    let defined: std::collections::HashSet<&str> = nm.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    let names: Vec<&str> = listed.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let present = names.iter().filter(|n| defined.contains(*n)).count();
    // The list holds the names of two builds (see link/merge-order.py), so neither has them all.
    let written =
        listed.lines().find_map(|l| l.strip_prefix("# In the binaries when written: ")).unwrap_or("not recorded");
    format!(
        "Link order: {present} of the {} functions listed in link/cloudlb.order are in the binary (when the list was written: {written}).",
        names.len()
    )
}
