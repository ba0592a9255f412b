//! Which Services are ours: `type: LoadBalancer` and `spec.loadBalancerClass` is our class, or
//! unset while `--manage-unclassed` is on (sidecar mode next to a cloud-controller-manager whose
//! own service controller is off).

use k8s_openapi::api::core::v1::Service;

use super::ClaimConfig;

pub fn is_claimed(svc: &Service, cfg: &ClaimConfig) -> bool {
    let Some(spec) = &svc.spec else { return false };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return false;
    }
    match spec.load_balancer_class.as_deref() {
        Some(class) => class == cfg.class,
        None => cfg.manage_unclassed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;

    fn svc(type_: &str, class: Option<&str>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                load_balancer_class: class.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claim_table() {
        let ours = ClaimConfig {
            class: "cloudlb.io/lb".into(),
            manage_unclassed: false,
            ingress_controller: "cloudlb.io/ingress-controller".into(),
        };
        let sidecar = ClaimConfig { manage_unclassed: true, ..ours.clone() };
        let cases = [
            (svc("LoadBalancer", Some("cloudlb.io/lb")), &ours, true),
            (svc("LoadBalancer", Some("other.io/lb")), &ours, false),
            (svc("LoadBalancer", None), &ours, false),
            (svc("LoadBalancer", None), &sidecar, true),
            (svc("LoadBalancer", Some("other.io/lb")), &sidecar, false),
            (svc("ClusterIP", Some("cloudlb.io/lb")), &ours, false),
            (svc("NodePort", None), &sidecar, false),
            (Service::default(), &sidecar, false),
        ];
        for (i, (s, cfg, want)) in cases.iter().enumerate() {
            assert_eq!(is_claimed(s, cfg), *want, "case {i}");
        }
    }
}
