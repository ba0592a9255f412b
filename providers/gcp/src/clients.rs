//! The Compute clients plus what every call needs: the shared rate limiter, the caller's
//! priority, the configuration, deadlines and operation waiting. One [`Api`] is made per provider
//! call (`ensure`, `delete`, `get`).
//!
//! Every mutation goes through [`Api::operate`]: take a token, send, wait for the operation to be
//! `DONE`, and then check the operation's own `error` (`Operation::to_result`), because the client
//! library's poller returns `Ok` for an operation that finished with an error.

use std::future::Future;
use std::time::Duration;

use cloudlb_provider::ProviderError;
use google_cloud_compute_v1::client::{
    Addresses, BackendServices, Firewalls, ForwardingRules, GlobalAddresses, GlobalForwardingRules, GlobalOperations,
    HealthChecks, InstanceGroups, RegionBackendServices, RegionHealthChecks, RegionOperations, SslCertificates,
    TargetHttpProxies, TargetHttpsProxies, UrlMaps, Zones,
};
use google_cloud_compute_v1::model::Operation;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::NeverRetry;

use crate::config::GcpConfig;
use crate::errors::{CallError, Kind};
use crate::throttle::{Limiter, Priority};

pub struct Clients {
    pub addresses: Addresses,
    pub forwarding_rules: ForwardingRules,
    pub backend_services: RegionBackendServices,
    pub health_checks: RegionHealthChecks,
    pub firewalls: Firewalls,
    pub instance_groups: InstanceGroups,
    pub zones: Zones,
    pub region_operations: RegionOperations,
    pub global_operations: GlobalOperations,
    /// The global collections of the L7 load balancers (Ingress).
    pub global: GlobalClients,
}

/// Clients of the global external Application Load Balancer's collections.
pub struct GlobalClients {
    pub addresses: GlobalAddresses,
    pub forwarding_rules: GlobalForwardingRules,
    pub backend_services: BackendServices,
    pub health_checks: HealthChecks,
    pub url_maps: UrlMaps,
    pub http_proxies: TargetHttpProxies,
    pub https_proxies: TargetHttpsProxies,
    pub certificates: SslCertificates,
}

fn setup(call: &'static str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Invalid { call, message: message.to_string() }
}

impl Clients {
    /// Clients for `config`: Application Default Credentials (Workload Identity, a key file in
    /// `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, the metadata server), or anonymous
    /// credentials when `endpoint_url` points at a fake. Makes no API call.
    pub async fn new(config: &GcpConfig) -> Result<Self, ProviderError> {
        let credentials = match &config.endpoint_url {
            Some(_) => google_cloud_auth::credentials::anonymous::Builder::new().build(),
            None => {
                google_cloud_auth::credentials::Builder::default().build().map_err(|e| ProviderError::Permission {
                    call: "gcp:credentials",
                    message: format!(
                        "no Google credentials found ({e}); use Workload Identity, set GOOGLE_APPLICATION_CREDENTIALS \
                         to a key file, or run `gcloud auth application-default login`"
                    ),
                })?
            }
        };
        let polling = || {
            ExponentialBackoffBuilder::new()
                .with_initial_delay(config.polling.initial_delay)
                .with_maximum_delay(config.polling.max_delay.max(config.polling.initial_delay))
                .build()
                .map_err(|e| setup("gcp:config", format!("operation polling settings: {e}")))
        };
        macro_rules! client {
            ($ty:ident) => {{
                let mut b = $ty::builder()
                    .with_credentials(credentials.clone())
                    // The controller retries whole (idempotent) passes; one request is one call.
                    .with_retry_policy(NeverRetry)
                    .with_polling_backoff_policy(polling()?);
                if let Some(url) = &config.endpoint_url {
                    b = b.with_endpoint(url.clone());
                }
                b.build()
                    .await
                    .map_err(|e| setup("gcp:client", format!("building the {} client: {e}", stringify!($ty))))?
            }};
        }
        Ok(Self {
            addresses: client!(Addresses),
            forwarding_rules: client!(ForwardingRules),
            backend_services: client!(RegionBackendServices),
            health_checks: client!(RegionHealthChecks),
            firewalls: client!(Firewalls),
            instance_groups: client!(InstanceGroups),
            zones: client!(Zones),
            region_operations: client!(RegionOperations),
            global_operations: client!(GlobalOperations),
            global: GlobalClients {
                addresses: client!(GlobalAddresses),
                forwarding_rules: client!(GlobalForwardingRules),
                backend_services: client!(BackendServices),
                health_checks: client!(HealthChecks),
                url_maps: client!(UrlMaps),
                http_proxies: client!(TargetHttpProxies),
                https_proxies: client!(TargetHttpsProxies),
                certificates: client!(SslCertificates),
            },
        })
    }
}

/// What one provider call works with.
pub struct Api<'a> {
    pub clients: &'a Clients,
    pub limiter: &'a Limiter,
    pub priority: Priority,
    pub config: &'a GcpConfig,
    /// Held shared by an ensure while it makes and attaches the cluster's shared resources,
    /// exclusively while they are deleted (see `GcpProvider`).
    pub shared: &'a tokio::sync::RwLock<()>,
    /// Held while a shared resource is made or its membership changed (see `GcpProvider`).
    pub changing_shared: &'a tokio::sync::Mutex<()>,
    /// Planning (`Provider::plan`): mutations are recorded and skipped (never sent), and the
    /// pass goes on reading (every mutation passes `operate`).
    pub dry_run: Option<&'a cloudlb_provider::DryRun>,
}

impl Api<'_> {
    pub fn project(&self) -> &str {
        &self.config.project
    }

    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// Take a token for `call` (and count it) before sending it.
    pub async fn permit(&self, call: &'static str) {
        self.limiter.acquire(call, self.priority).await;
    }

    /// A read; `Ok(None)` when Compute answers 404.
    pub async fn read<T, F>(&self, call: &'static str, request: F) -> Result<Option<T>, CallError>
    where
        F: Future<Output = google_cloud_gax::Result<T>>,
    {
        self.permit(call).await;
        match tokio::time::timeout(self.config.call_timeout, request).await {
            Err(_) => Err(timeout(call, self.config.call_timeout, "the call")),
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(e)) => {
                let e = self.note(CallError::from_gax(call, &e));
                if e.is_not_found() { Ok(None) } else { Err(e) }
            }
        }
    }

    /// A mutation: send, wait until the operation is `DONE`, then check the operation's `error`.
    /// `request` is `builder.poller().until_done()`.
    pub async fn operate<F>(&self, call: &'static str, request: F) -> Result<Operation, CallError>
    where
        F: Future<Output = google_cloud_gax::Result<Operation>>,
    {
        if let Some(d) = self.dry_run {
            // `request` is never polled, so nothing is sent.
            d.record(
                call,
                cloudlb_provider::dry_run::action_of(call).unwrap_or(cloudlb_provider::ChangeAction::Update),
            );
            return Ok(Operation::default());
        }
        self.permit(call).await;
        tracing::debug!(call, "compute call");
        let op = match tokio::time::timeout(self.config.operation_timeout, request).await {
            Err(_) => return Err(timeout(call, self.config.operation_timeout, "the operation")),
            Ok(Err(e)) => return Err(self.note(CallError::from_gax(call, &e))),
            Ok(Ok(op)) => op,
        };
        op.to_result().map_err(|e| self.note(CallError::from_operation(call, &e)))
    }

    /// Counts a throttling answer (the clients never retry: each one is one call).
    fn note(&self, e: CallError) -> CallError {
        if e.is_throttled() {
            self.limiter.throttled(e.call);
        }
        e
    }
}

/// A delete's outcome with "not found" counted as done.
pub fn gone(result: Result<Operation, CallError>) -> Result<(), CallError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}

fn timeout(call: &'static str, after: Duration, what: &str) -> CallError {
    CallError::new(call, Kind::Timeout, format!("{what} did not finish within {after:?}; the next pass checks again"))
}
