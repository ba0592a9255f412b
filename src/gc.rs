//! Garbage collection: load balancers in the cloud tagged for this cluster whose owner no longer
//! exists or no longer claims them (`cloudlb gc [--dry-run]`, and the controller's sweep every
//! `--gc-interval`, off by default).
//!
//! ```text
//!   provider.list_owned(cluster)          every load balancer by its ownership marks (one entry per uid)
//!   Services, Ingresses, IngressClasses   listed from the API (one list each, not a cache)
//!   live uids = claimed objects, objects still carrying our finalizer (their cleanup is the
//!               controller's), and the Ingress groups of those Ingresses
//!   orphan    = owned, uid not live, older than --gc-min-age  ->  delete (or only listed)
//! ```
//!
//! Why it is safe: nothing is deleted unless every list succeeded (a failed or partial list
//! stops the sweep); an object with our finalizer is never swept (the controller releases it and
//! knows its record); a young load balancer is never swept (an ensure may be making it for an
//! object the lists raced with); only the layers this instance runs are swept (a Service-only
//! instance leaves Ingress load balancers alone); another cluster's resources never show up
//! (the provider lists by the cluster's marks and checks them again). The deletes are the
//! provider's own `delete`/`delete_l7` with the id the marks give and no record: what a half-made
//! load balancer left is found by name and marks, as after a crash.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use cloudlb_provider::{OwnedLoadBalancer, Provider};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};

use crate::claim::{self, ClaimConfig};
use crate::desired::ingress::group;
use crate::error::{Error, Result};
use crate::keys::FINALIZER;

#[derive(Clone, Debug)]
pub struct GcConfig {
    pub cluster: String,
    pub claim: ClaimConfig,
    /// Only owners in this namespace are considered (as `--namespace` limits the controller).
    pub namespace: Option<String>,
    /// Which layers this instance runs.
    pub services: bool,
    pub ingresses: bool,
    /// Younger load balancers are left alone.
    pub min_age: Duration,
    pub dry_run: bool,
}

/// What the sweep did with one load balancer that nothing claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Deleted,
    /// `--dry-run`.
    WouldDelete,
    /// Younger than `--gc-min-age`: the next sweep looks again.
    TooYoung,
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub owned: OwnedLoadBalancer,
    pub age: Option<Duration>,
    pub outcome: Outcome,
}

fn has_finalizer<K: Resource>(o: &K) -> bool {
    o.meta().finalizers.as_ref().is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Every object of kind `K` in `namespace` (or all), in one list; an error names `what`.
pub(crate) async fn list<K>(client: &Client, namespace: &Option<String>, what: &'static str) -> Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    api.list(&ListParams::default()).await.map(|l| l.items).map_err(|source| Error::List { what, source })
}

/// Every object of the cluster-scoped kind `K`.
pub(crate) async fn list_all<K>(client: &Client, what: &'static str) -> Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|source| Error::List { what, source })
}

/// The uids of load balancers something in the cluster still owns.
pub async fn live_uids(client: &Client, cfg: &GcConfig) -> Result<BTreeSet<String>> {
    let mut live = BTreeSet::new();
    for svc in list::<Service>(client, &cfg.namespace, "Services").await? {
        if claim::is_claimed(&svc, &cfg.claim) || has_finalizer(&svc) {
            live.extend(svc.metadata.uid.clone());
        }
    }
    if cfg.ingresses {
        let classes: Vec<IngressClass> = list_all(client, "IngressClasses").await?;
        for ing in list::<Ingress>(client, &cfg.namespace, "Ingresses").await? {
            if claim::ingress::is_claimed(&ing, &classes, &cfg.claim.ingress_controller) || has_finalizer(&ing) {
                live.extend(ing.metadata.uid.clone());
                // A malformed group annotation: the member is not in a group (the controller says so).
                if let Ok(Some((name, _))) = group::group_of(&ing) {
                    live.insert(group::group_id(&cfg.cluster, &name).uid);
                }
            }
        }
    }
    Ok(live)
}

/// One sweep: list, compare, delete (or not). Fails, deleting nothing, when a list fails.
pub async fn sweep(client: &Client, provider: &dyn Provider, cfg: &GcConfig) -> Result<Vec<Finding>> {
    let owned = provider.list_owned(&cfg.cluster).await.map_err(Error::GcInventory)?;
    // The cloud first, the cluster second: an object created in between is seen live.
    let live = live_uids(client, cfg).await?;
    let now = SystemTime::now();
    let mut out = Vec::new();
    for o in owned {
        let layer_runs = if o.l7 { cfg.ingresses } else { cfg.services };
        // A group's id has no namespace (its members may be in several): an instance limited to
        // one namespace leaves groups alone.
        let in_scope = cfg.namespace.as_deref().is_none_or(|ns| o.id.namespace == ns);
        if live.contains(&o.id.uid) || !layer_runs || !in_scope {
            continue;
        }
        let age = o.created.and_then(|c| now.duration_since(c).ok());
        let outcome = if age.is_some_and(|a| a < cfg.min_age) {
            Outcome::TooYoung
        } else if cfg.dry_run {
            Outcome::WouldDelete
        } else {
            let result = if o.l7 { provider.delete_l7(&o.id, None).await } else { provider.delete(&o.id, None).await };
            match result {
                Ok(()) => Outcome::Deleted,
                Err(e) => Outcome::Failed(e.to_string()),
            }
        };
        out.push(Finding { owned: o, age, outcome });
    }
    Ok(out)
}

fn human(d: Option<Duration>) -> String {
    let Some(d) = d else { return "?".into() };
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The findings as a table (one line per load balancer, then its resources indented).
pub fn report(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no load balancer of this cluster is orphaned\n".into();
    }
    let mut out = String::from(
        "KIND     OWNER                                    UID                                      AGE   ACTION\n",
    );
    for f in findings {
        let action = match &f.outcome {
            Outcome::Deleted => "deleted".to_string(),
            Outcome::WouldDelete => "would delete (dry run)".to_string(),
            Outcome::TooYoung => "kept: younger than --gc-min-age".to_string(),
            Outcome::Failed(e) => format!("FAILED: {e}"),
        };
        let kind = if f.owned.l7 { "Ingress" } else { "Service" };
        let owner = f.owned.id.owner();
        let _ = writeln!(out, "{kind:<8} {owner:<40} {:<40} {:<5} {action}", f.owned.id.uid, human(f.age));
        for r in &f.owned.resources {
            let _ = writeln!(out, "           {r}");
        }
    }
    out
}

/// `cloudlb gc`: one sweep, the report on stdout; an error when a delete failed.
pub async fn run(args: crate::args::GcArgs) -> Result<()> {
    let (provider, client) = crate::app::connect(&args.run).await?;
    let cfg = config(&args.run.controller, args.dry_run);
    let findings = sweep(&client, provider.as_ref(), &cfg).await?;
    print!("{}", report(&findings));
    let failed = findings.iter().filter(|f| matches!(f.outcome, Outcome::Failed(_))).count();
    if failed > 0 { Err(Error::GcIncomplete(failed)) } else { Ok(()) }
}

/// The sweep's configuration from the controller's flags.
pub fn config(args: &crate::args::ControllerArgs, dry_run: bool) -> GcConfig {
    use crate::args::ControllerKind;
    GcConfig {
        cluster: args.cluster_name.clone(),
        claim: ClaimConfig {
            class: args.load_balancer_class.clone(),
            manage_unclassed: args.manage_unclassed,
            ingress_controller: args.ingress_controller_name.clone(),
        },
        namespace: args.namespace.clone(),
        services: args.controllers.contains(&ControllerKind::Service),
        ingresses: args.controllers.contains(&ControllerKind::Ingress),
        min_age: args.gc_min_age,
        dry_run,
    }
}

/// The controller's periodic sweep (`--gc-interval`): the first after one interval, so a
/// starting controller finishes its own cleanup first.
pub async fn every(interval: Duration, client: Client, provider: std::sync::Arc<dyn Provider>, cfg: GcConfig) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sweep(&client, provider.as_ref(), &cfg).await {
            Ok(findings) => {
                for f in &findings {
                    tracing::warn!(
                        owner = %f.owned.id.owner(), uid = %f.owned.id.uid, ingress = f.owned.l7,
                        resources = ?f.owned.resources, outcome = ?f.outcome,
                        "gc: load balancer without a live owner"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "gc sweep failed; nothing was deleted, retrying next interval"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::LoadBalancerId;

    #[test]
    fn the_report_names_owner_uid_age_action_and_resources() {
        let f = Finding {
            owned: OwnedLoadBalancer {
                id: LoadBalancerId::new("prod", "shop", "web", "u-1"),
                l7: true,
                created: None,
                resources: vec!["urlMaps k8s7-shop-web-x-um".into()],
            },
            age: Some(Duration::from_secs(3 * 3600)),
            outcome: Outcome::WouldDelete,
        };
        let r = report(&[f]);
        assert!(r.contains("Ingress  shop/web"), "{r}");
        assert!(r.contains("u-1") && r.contains("3h") && r.contains("would delete (dry run)"), "{r}");
        assert!(r.contains("\n           urlMaps k8s7-shop-web-x-um\n"), "{r}");
        assert_eq!(report(&[]), "no load balancer of this cluster is orphaned\n");
    }
}
