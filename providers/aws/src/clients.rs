//! The SDK clients plus what every call needs: the shared rate limiter, the caller's priority
//! and the configuration. One [`Api`] is made per provider call (`ensure`, `delete`, `get`).

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_acm as acm;
use aws_sdk_ec2 as ec2;
use aws_sdk_elasticloadbalancingv2 as elbv2;
use aws_sdk_resourcegroupstagging as tagging;
use cloudlb_provider::ProviderError;

use crate::config::AwsConfig;
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
    /// ECS/EC2 metadata). Fails early, with a readable message, when no credentials are found.
    pub async fn new(config: &AwsConfig) -> Result<Self, ProviderError> {
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
        Ok(Self {
            elb: elbv2::Client::new(&sdk),
            ec2: ec2::Client::new(&sdk),
            acm: acm::Client::new(&sdk),
            tagging: tagging::Client::new(&sdk),
        })
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
    /// Planning (`Provider::plan`): the first mutating call is recorded and never sent; the
    /// pass stops there (every call passes `permit` first).
    pub dry_run: Option<&'a cloudlb_provider::DryRun>,
}

impl Api<'_> {
    /// Take a token for `call` (and count it) before sending it.
    pub async fn permit(&self, call: &'static str) {
        if let Some(d) = self.dry_run
            && let Some(action) = cloudlb_provider::dry_run::action_of(call)
        {
            d.stop_at(call, action).await;
        }
        self.limiter.acquire(call, self.priority).await;
    }
}
