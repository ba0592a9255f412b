//! The SDK clients plus what every call needs: the shared rate limiter, the caller's priority
//! and the configuration. One [`Api`] is made per provider call (`ensure`, `delete`, `get`).
//!
//! Each client counts the responses that throttled a call ([`CountThrottles`]): the SDK retries
//! those itself (`max_attempts`), so the error a call finally returns shows only the last one.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_acm as acm;
use aws_sdk_ec2 as ec2;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_sdk_resourcegroupstagging as tagging;
use std::sync::Arc;

use aws_sdk_elasticloadbalancingv2::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_elasticloadbalancingv2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_elasticloadbalancingv2::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use cloudlb_provider::ProviderError;
use cloudlb_provider::throttle::CallCounts;

use crate::config::AwsConfig;
use crate::errors;
use crate::throttle::{Limiter, Priority};

pub struct Clients {
    pub elb: elbv2::Client,
    pub ec2: ec2::Client,
    /// Certificates imported from Ingress TLS Secrets (ALBs).
    pub acm: acm::Client,
    /// Finding our resources by their ownership tags in one call.
    pub tagging: tagging::Client,
}

impl Clients {
    /// Clients for `config`, credentials from the standard chain (env, profile, web identity,
    /// ECS/EC2 metadata), counting throttled responses into `throttles`. Fails early, with a
    /// readable message, when no credentials are found.
    pub async fn new(config: &AwsConfig, throttles: Arc<CallCounts>) -> Result<Self, ProviderError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.max(1)))
            .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(config.call_timeout).build());
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk = loader.load().await;
        let Some(credentials) = sdk.credentials_provider() else {
            return Err(ProviderError::Permission {
                call: "aws:credentials",
                message: "no AWS credentials provider is configured".into(),
            });
        };
        use aws_credential_types::provider::ProvideCredentials;
        credentials.provide_credentials().await.map_err(|e| ProviderError::Permission {
            call: "aws:credentials",
            message: format!(
                "no AWS credentials found ({e}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, \
                 IRSA/pod identity, or run on an instance with a role"
            ),
        })?;
        let counting = |service| CountThrottles { service, counts: throttles.clone() };
        Ok(Self {
            elb: elbv2::Client::from_conf(elbv2::config::Builder::from(&sdk).interceptor(counting("elbv2")).build()),
            ec2: ec2::Client::from_conf(ec2::config::Builder::from(&sdk).interceptor(counting("ec2")).build()),
            acm: acm::Client::from_conf(acm::config::Builder::from(&sdk).interceptor(counting("acm")).build()),
            tagging: tagging::Client::from_conf(
                tagging::config::Builder::from(&sdk).interceptor(counting("tagging")).build(),
            ),
        })
    }
}

/// Counts every response that throttled a call, by `service:Action` (the names the limiter
/// counts calls under), SDK retries included: it sees each attempt's response once its body was
/// read, before the SDK decides to retry.
#[derive(Debug)]
struct CountThrottles {
    /// The prefix of this client's calls (`elbv2`, `ec2`, `acm`, `tagging`).
    service: &'static str,
    counts: Arc<CallCounts>,
}

impl Intercept for CountThrottles {
    fn name(&self) -> &'static str {
        "CountThrottles"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let status = response.status().as_u16();
        if status < 400 {
            return Ok(());
        }
        let code = errors::response_code(response.headers().get("x-amzn-errortype"), response.body().bytes());
        if errors::is_throttling(status, code.as_deref().unwrap_or_default())
            && let Some(operation) = cfg.load::<Metadata>()
        {
            self.counts.count(&format!("{}:{}", self.service, operation.name()));
        }
        Ok(())
    }
}

/// Every page of a paged describe, each after a token of `call`: `fetch(marker)` returns one
/// page's items and the next marker (`None` or empty after the last page).
pub async fn all_pages<T, F, Fut>(api: &Api<'_>, call: &'static str, mut fetch: F) -> Result<Vec<T>, ProviderError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), ProviderError>>,
{
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        api.permit(call).await;
        let (items, marker) = fetch(next.take()).await?;
        out.extend(items);
        next = marker.filter(|m| !m.is_empty());
        if next.is_none() {
            return Ok(out);
        }
    }
}

/// What one provider call works with.
pub struct Api<'a> {
    pub elb: &'a elbv2::Client,
    pub ec2: &'a ec2::Client,
    pub acm: &'a acm::Client,
    pub tagging: &'a tagging::Client,
    pub limiter: &'a Limiter,
    pub priority: Priority,
    pub config: &'a AwsConfig,
    /// What the provider remembers about node security groups, and the lock that serializes
    /// changing their rules (`node_security.rs`).
    pub node: &'a crate::node_security::NodeSecurity,
    /// Planning (`Provider::plan`): mutating calls are recorded and skipped (see [`Api::mutate`]).
    pub dry_run: Option<&'a cloudlb_provider::DryRun>,
}

impl Api<'_> {
    /// Take a token for `call` (and count it) before sending it.
    pub async fn permit(&self, call: &'static str) {
        self.limiter.acquire(call, self.priority).await;
    }

    /// Before a mutating call: `true` = send it (its token is taken); `false` = a dry run, the
    /// call is recorded and the caller skips it, answering what it would have made with a
    /// placeholder (`crate::planned`).
    pub async fn mutate(&self, call: &'static str) -> bool {
        if let Some(d) = self.dry_run {
            d.record(
                call,
                cloudlb_provider::dry_run::action_of(call).unwrap_or(cloudlb_provider::ChangeAction::Update),
            );
            return false;
        }
        self.permit(call).await;
        true
    }
}
