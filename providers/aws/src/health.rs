//! The health check each target group gets.
//!
//! ```text
//!   externalTrafficPolicy: Local   -> HTTP /healthz on healthCheckNodePort (kube-proxy answers 200
//!                                     only on nodes with a ready endpoint)
//!   externalTrafficPolicy: Cluster -> TCP connect to the traffic port (the node port); for a
//!                                     UDP-only port, where a TCP connect cannot succeed, HTTP
//!                                     /healthz on kube-proxy's 10256 instead
//!   healthcheck-* annotations      -> override field by field
//! ```
//!
//! Values are clamped to what an NLB accepts (interval 5-300 s, timeout 2-120 s, thresholds 2-10)
//! so a spec built for another cloud never makes CreateTargetGroup fail.

use cloudlb_provider::{HealthCheck, HealthCheckProtocol, HealthTarget};

use crate::options::{HcPort, HcProtocol, HealthOverrides};
use crate::plan::TgProtocol;

/// kube-proxy's health port (`--healthz-bind-address`).
pub const KUBE_PROXY_HEALTH_PORT: u16 = 10256;
pub const DEFAULT_PATH: &str = "/healthz";
pub const DEFAULT_SUCCESS_CODES: &str = "200-399";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub protocol: HcProtocol,
    pub port: HcPort,
    /// Only for HTTP(S).
    pub path: Option<String>,
    pub interval: u32,
    pub timeout: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Only for HTTP(S).
    pub success_codes: Option<String>,
}

pub fn desired(spec: &HealthCheck, tg: TgProtocol, overrides: &HealthOverrides) -> HealthSettings {
    let (protocol, port, path) = match spec.target {
        HealthTarget::ServiceHealthCheckNodePort => (
            HcProtocol::Http,
            spec.port.map_or(HcPort::TrafficPort, HcPort::Port),
            Some(spec.path.clone().unwrap_or_else(|| DEFAULT_PATH.into())),
        ),
        HealthTarget::KubeProxy if tg == TgProtocol::Udp => {
            let port = spec.port.unwrap_or(KUBE_PROXY_HEALTH_PORT);
            let path = match spec.protocol {
                HealthCheckProtocol::Http => spec.path.clone(),
                HealthCheckProtocol::Tcp => None,
            };
            (HcProtocol::Http, HcPort::Port(port), Some(path.unwrap_or_else(|| DEFAULT_PATH.into())))
        }
        HealthTarget::KubeProxy => (HcProtocol::Tcp, HcPort::TrafficPort, None),
    };
    let protocol = overrides.protocol.unwrap_or(protocol);
    let port = overrides.port.unwrap_or(port);
    let (path, success_codes) = if protocol.is_http() {
        (
            Some(overrides.path.clone().or(path).unwrap_or_else(|| DEFAULT_PATH.into())),
            Some(overrides.success_codes.clone().unwrap_or_else(|| DEFAULT_SUCCESS_CODES.into())),
        )
    } else {
        (None, None)
    };
    HealthSettings {
        protocol,
        port,
        path,
        interval: overrides.interval.unwrap_or(spec.interval_seconds).clamp(5, 300),
        timeout: overrides.timeout.unwrap_or(spec.timeout_seconds).clamp(2, 120),
        healthy_threshold: overrides.healthy_threshold.unwrap_or(spec.healthy_threshold).clamp(2, 10),
        unhealthy_threshold: overrides.unhealthy_threshold.unwrap_or(spec.unhealthy_threshold).clamp(2, 10),
        success_codes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(target: HealthTarget, protocol: HealthCheckProtocol, port: Option<u16>) -> HealthCheck {
        HealthCheck {
            target,
            protocol,
            port,
            path: None,
            interval_seconds: 10,
            timeout_seconds: 5,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }

    #[test]
    fn local_policy_is_http_healthz_on_the_health_check_node_port() {
        let h = desired(
            &hc(HealthTarget::ServiceHealthCheckNodePort, HealthCheckProtocol::Http, Some(32000)),
            TgProtocol::Tcp,
            &HealthOverrides::default(),
        );
        assert_eq!(h.protocol, HcProtocol::Http);
        assert_eq!(h.port, HcPort::Port(32000));
        assert_eq!(h.path.as_deref(), Some("/healthz"));
        assert_eq!((h.interval, h.timeout, h.healthy_threshold, h.unhealthy_threshold), (10, 5, 2, 3));
    }

    #[test]
    fn cluster_policy_is_tcp_on_the_traffic_port_except_udp() {
        let spec = hc(HealthTarget::KubeProxy, HealthCheckProtocol::Tcp, None);
        let h = desired(&spec, TgProtocol::Tcp, &HealthOverrides::default());
        assert_eq!((h.protocol, h.port, h.path), (HcProtocol::Tcp, HcPort::TrafficPort, None));
        let h = desired(&spec, TgProtocol::Udp, &HealthOverrides::default());
        assert_eq!((h.protocol, h.port), (HcProtocol::Http, HcPort::Port(KUBE_PROXY_HEALTH_PORT)));
    }

    #[test]
    fn overrides_win_and_values_are_clamped() {
        let mut spec = hc(HealthTarget::KubeProxy, HealthCheckProtocol::Tcp, None);
        spec.interval_seconds = 1;
        spec.healthy_threshold = 50;
        let o = HealthOverrides {
            protocol: Some(HcProtocol::Http),
            path: Some("/ready".into()),
            success_codes: Some("200".into()),
            timeout: Some(3),
            ..Default::default()
        };
        let h = desired(&spec, TgProtocol::Tcp, &o);
        assert_eq!(h.protocol, HcProtocol::Http);
        assert_eq!(h.path.as_deref(), Some("/ready"));
        assert_eq!(h.success_codes.as_deref(), Some("200"));
        assert_eq!((h.interval, h.timeout, h.healthy_threshold), (5, 3, 10));
    }
}
