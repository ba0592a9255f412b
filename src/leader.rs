//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run and only
//! one reconciles.
//!
//! The algorithm is client-go's: the lease is taken or renewed with an update carrying the
//! `resourceVersion` read just before (a concurrent writer gets 409 and loses); another holder's
//! lease counts as expired only after `lease_duration` has passed *on our clock* since we last saw
//! it change, so clock skew between nodes cannot make two leaders. A leader that cannot renew
//! for `renew_deadline` stops leading (the process exits and is restarted by its Deployment);
//! a leader that shuts down cleanly releases the lease so a standby takes over at once.
//!
//! # Guarantees
//! - At most one holder at a time, as long as clocks advance at about the same *rate*.
//! - `acquire` returns only once this process holds the lease.
//! - After `lost` fires, this process must stop mutating anything.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What we last saw of someone else's lease, and when (on our clock).
struct Observed {
    holder: String,
    renew: Option<MicroTime>,
    at: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    observed: Option<Observed>,
}

/// Held leadership: `lost` turns true when renewal failed for longer than the deadline.
pub struct Leadership {
    pub lost: watch::Receiver<bool>,
    release: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Stops renewing and gives the lease up so a standby can take over immediately.
    pub async fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

enum Attempt {
    Held,
    Busy(String),
}

impl Elector {
    pub fn new(client: Client, cfg: LeaderConfig) -> Self {
        Self { api: Api::namespaced(client, &cfg.namespace), cfg, observed: None }
    }

    /// Waits until this process holds the lease, then keeps renewing it in the background.
    /// `standby` is called each time another holder keeps it.
    pub async fn acquire(mut self, standby: impl Fn()) -> Leadership {
        let mut last_holder = String::new();
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => break,
                Ok(Attempt::Busy(holder)) => {
                    standby();
                    if holder != last_holder {
                        info!(lease = %self.cfg.name, %holder, "waiting for leadership");
                        last_holder = holder;
                    }
                }
                Err(e) => warn!(lease = %self.cfg.name, error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
        info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
        let (lost_tx, lost) = watch::channel(false);
        let (release_tx, mut release_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut last_ok = Instant::now();
            loop {
                tokio::select! {
                    _ = &mut release_rx => {
                        self.release().await;
                        return;
                    }
                    _ = tokio::time::sleep(self.cfg.retry_period) => {}
                }
                match self.try_acquire_or_renew().await {
                    Ok(Attempt::Held) => last_ok = Instant::now(),
                    Ok(Attempt::Busy(holder)) => {
                        warn!(%holder, "lease taken by another holder; stopping");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "renewing the lease failed");
                        if last_ok.elapsed() >= self.cfg.renew_deadline {
                            warn!("could not renew the lease within the deadline; stopping");
                            let _ = lost_tx.send(true);
                            return;
                        }
                    }
                }
            }
        });
        Leadership { lost, release: Some(release_tx), task }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.cfg.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Busy("(just created by another)".into())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.cfg.identity;
        if !mine && !holder.is_empty() {
            let changed = self.observed.as_ref().is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
            if changed {
                self.observed =
                    Some(Observed { holder: holder.clone(), renew: spec.renew_time.clone(), at: Instant::now() });
            }
            let held_for =
                spec.lease_duration_seconds.map_or(self.cfg.lease_duration, |s| Duration::from_secs(s.max(1) as u64));
            let seen = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
            if seen.elapsed() < held_for {
                return Ok(Attempt::Busy(holder));
            }
        }
        let mut next = spec.clone();
        next.holder_identity = Some(self.cfg.identity.clone());
        next.lease_duration_seconds = Some(duration);
        next.renew_time = Some(now.clone());
        if !mine {
            next.acquire_time = Some(now);
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Busy(holder)),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (empty holder) if we still hold it.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %self.cfg.name, "released leadership"),
            Err(e) => warn!(error = %e, "releasing the lease failed; a standby takes over when it expires"),
        }
    }
}

/// 8 random hex characters.
pub fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
