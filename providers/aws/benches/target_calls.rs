//! `cargo bench -p cloudlb-provider-aws --bench target_calls [-- --load-balancers 20]`
//!
//! AWS API calls per load balancer when only the node set changes, against moto_server
//! (`pip install 'moto[server]==5.2.1'`), read from the provider's own call counters: what a node
//! joining or leaving costs each NLB (`update_targets`), next to what a full `ensure` of an
//! unchanged load balancer costs (what a node change cost before targets-only updates existed).
//! Every load balancer has two listeners (two target groups). Prints a markdown table.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use cloudlb_provider::Provider;
use support::World;

fn row(phase: &str, n: usize, calls: &BTreeMap<String, u64>, secs: f64) {
    let total: u64 = calls.values().sum();
    let mutating: u64 = calls.iter().filter(|(k, _)| !k.contains(":Describe")).map(|(_, v)| v).sum();
    let by: Vec<String> = calls.iter().map(|(k, v)| format!("{k} {:.1}", *v as f64 / n as f64)).collect();
    println!(
        "| {phase} | {:.1} | {:.1} | {} | {:.1} ms |",
        total as f64 / n as f64,
        mutating as f64 / n as f64,
        by.join(", "),
        secs * 1000.0 / n as f64
    );
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let n = match argv.as_slice() {
        [] => 20,
        [flag, v] if flag == "--load-balancers" => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("error: --load-balancers takes a positive number, got {v:?}");
                std::process::exit(2);
            }
        },
        other => {
            eprintln!("error: unknown arguments {other:?}; usage: target_calls [--load-balancers N]");
            std::process::exit(2);
        }
    };
    support::test_env();
    let w = World::new("bench").await;
    let p = w.provider().await;
    let ports = [(80, 30080), (443, 30443)];
    let mut made = Vec::with_capacity(n);
    for i in 0..n {
        let id = w.id(&format!("svc-{i:03}"));
        let st = p.ensure(&id, &w.spec(&ports, &[0, 1]), None).await.expect("ensure");
        made.push((id, st.record));
    }
    println!("## AWS calls per load balancer on node changes ({n} NLBs, 2 target groups each, moto)\n");
    println!("| phase | calls | mutating | by action | time |");
    println!("|---|---|---|---|---|");
    let phases: [(&str, &[usize], bool); 4] = [
        ("node joins: update_targets", &[0, 1, 2], false),
        ("node leaves: update_targets", &[1, 2], false),
        ("targets already right: update_targets", &[1, 2], false),
        ("full ensure, targets already right (for comparison)", &[1, 2], true),
    ];
    for (phase, nodes, full) in phases {
        let spec = w.spec(&ports, nodes);
        let before = p.call_counts();
        let started = Instant::now();
        for (id, record) in &made {
            if full {
                p.ensure(id, &spec, Some(record)).await.expect("ensure");
            } else {
                p.update_targets(id, &spec, Some(record)).await.expect("update targets");
            }
        }
        row(phase, n, &support::calls_since(&before, &p.call_counts()), started.elapsed().as_secs_f64());
    }
    for (id, record) in &made {
        p.delete(id, Some(record)).await.expect("delete");
    }
}
