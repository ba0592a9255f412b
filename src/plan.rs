//! `cloudlb plan [namespace/name]`: what the next ensure of one object (or of every object this
//! configuration claims) would change in the cloud, changing nothing.
//!
//! The desired spec is built exactly as the controller builds it (from the API, not a cache),
//! and the provider runs its own ensure with mutations recorded instead of sent
//! (`Provider::plan`, see `cloudlb_provider::dry_run`): the plan is what the real pass would do,
//! not a second implementation of it. Members of Ingress groups are not planned (their spec is the
//! merge of the whole group); the local and memory providers have no cloud to plan against.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use cloudlb_provider::{LoadBalancerId, Plan, Provider};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::{Client, Resource};

use crate::app::{Mode, controller_config};
use crate::claim;
use crate::controller::reconcile::record;
use crate::desired::ingress::{self, Inputs, group};
use crate::desired::nodes::{NodeSnapshot, eligible};
use crate::desired::service;
use crate::error::Result;
use crate::gc::{list, list_all};

/// One object's plan, or why there is none.
pub struct Planned {
    /// `Service ns/name` or `Ingress ns/name`.
    pub object: String,
    pub outcome: std::result::Result<Plan, String>,
}

fn key<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.meta().namespace.as_deref().unwrap_or_default(), o.meta().name.as_deref().unwrap_or_default())
}

fn id_of<K: Resource>(cluster: &str, o: &K) -> LoadBalancerId {
    let m = o.meta();
    LoadBalancerId::new(
        cluster,
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
}

/// Plans every claimed object (or only `only`, `namespace/name`).
pub async fn plan_all(
    client: &Client,
    provider: &dyn Provider,
    args: &crate::args::ControllerArgs,
    only: Option<&str>,
) -> Result<Vec<Planned>> {
    let cfg = controller_config(args, Mode::Cluster);
    let caps = provider.capabilities();
    let nodes: Vec<Node> = list_all(client, "Nodes").await?;
    let nodes = NodeSnapshot::new(eligible(nodes.iter()));
    let services: Vec<Service> = list(client, &cfg.namespace, "Services").await?;
    let wanted = |k: &str| only.is_none_or(|o| o == k);
    let mut out = Vec::new();
    if cfg.services {
        for svc in services.iter().filter(|s| claim::is_claimed(s, &cfg.claim) && wanted(&key(*s))) {
            let outcome = match service::build_for(svc, &nodes, &cfg.desired, &caps, provider) {
                Err(invalid) => Err(format!("invalid: {invalid}")),
                Ok(spec) => provider
                    .plan(&id_of(&cfg.cluster_name, svc), &spec, record(svc).as_ref())
                    .await
                    .map_err(|e| e.to_string()),
            };
            out.push(Planned { object: format!("Service {}", key(svc)), outcome });
        }
    }
    if let Some(icfg) = &cfg.ingress {
        let classes: Vec<IngressClass> = list_all(client, "IngressClasses").await?;
        let ingresses: Vec<Ingress> = list(client, &cfg.namespace, "Ingresses").await?;
        let secrets: Vec<Secret> = list(client, &cfg.namespace, "Secrets").await?;
        let svc_map: BTreeMap<(String, String), Arc<Service>> = services
            .iter()
            .map(|s| {
                (
                    (s.meta().namespace.clone().unwrap_or_default(), s.meta().name.clone().unwrap_or_default()),
                    Arc::new(s.clone()),
                )
            })
            .collect();
        let secret_map: BTreeMap<(String, String), Arc<Secret>> = secrets
            .into_iter()
            .map(|s| {
                (
                    (s.meta().namespace.clone().unwrap_or_default(), s.meta().name.clone().unwrap_or_default()),
                    Arc::new(s),
                )
            })
            .collect();
        let services_of = |ns: &str, n: &str| svc_map.get(&(ns.to_string(), n.to_string())).cloned();
        let secrets_of = |ns: &str, n: &str| secret_map.get(&(ns.to_string(), n.to_string())).cloned();
        let inputs =
            Inputs { services: &services_of, secrets: &secrets_of, last_good: &|_| None, nodes: &nodes, config: icfg };
        for ing in ingresses.iter().filter(|i| claim::ingress::is_claimed(i, &classes, &cfg.claim.ingress_controller)) {
            if !wanted(&key(ing)) {
                continue;
            }
            let outcome = if matches!(group::group_of(ing), Ok(Some(_))) {
                Err("a member of an Ingress group: its load balancer is the whole group's, not planned".to_string())
            } else {
                match ingress::build_for(ing, &inputs, &caps, provider) {
                    Err(invalid) => Err(format!("invalid: {invalid}")),
                    Ok(built) => provider
                        .plan_l7(&id_of(&cfg.cluster_name, ing), &built.spec, record(ing).as_ref())
                        .await
                        .map_err(|e| e.to_string()),
                }
            };
            out.push(Planned { object: format!("Ingress {}", key(ing)), outcome });
        }
    }
    Ok(out)
}

/// The plans as text: per object, its changes (or "no change").
pub fn report(plans: &[Planned]) -> String {
    if plans.is_empty() {
        return "no object claimed by this configuration matches\n".into();
    }
    let mut out = String::new();
    for p in plans {
        match &p.outcome {
            Err(why) => {
                let _ = writeln!(out, "{}: not planned: {why}", p.object);
            }
            Ok(plan) if plan.changes.is_empty() => {
                let _ = writeln!(out, "{}: no change", p.object);
            }
            Ok(plan) => {
                let _ = writeln!(out, "{}: {} change(s)", p.object, plan.changes.len());
                for c in &plan.changes {
                    let _ = writeln!(out, "  {:<7} {}", c.action.as_str(), c.call);
                }
                if !plan.complete {
                    let _ =
                        writeln!(out, "  …      and what follows from the last change (it needs that change's result)");
                }
            }
        }
    }
    out
}

/// `cloudlb plan`.
pub async fn run(args: crate::args::PlanArgs) -> Result<()> {
    let (provider, client) = crate::app::connect(&args.run).await?;
    let plans = plan_all(&client, provider.as_ref(), &args.run.controller, args.object.as_deref()).await?;
    print!("{}", report(&plans));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::{ChangeAction, PlannedChange};

    #[test]
    fn the_report_lists_changes_and_says_when_more_follow() {
        let plans = vec![
            Planned {
                object: "Service default/web".into(),
                outcome: Ok(Plan {
                    changes: vec![PlannedChange {
                        action: ChangeAction::Create,
                        call: "elbv2:CreateTargetGroup".into(),
                    }],
                    complete: false,
                }),
            },
            Planned { object: "Service default/ok".into(), outcome: Ok(Plan { changes: vec![], complete: true }) },
            Planned { object: "Ingress default/bad".into(), outcome: Err("invalid: x".into()) },
        ];
        let r = report(&plans);
        assert!(r.contains("Service default/web: 1 change(s)\n  create  elbv2:CreateTargetGroup\n  …"), "{r}");
        assert!(r.contains("Service default/ok: no change"), "{r}");
        assert!(r.contains("Ingress default/bad: not planned: invalid: x"), "{r}");
    }
}
