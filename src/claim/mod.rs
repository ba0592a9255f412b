//! Which objects are ours: Services by `loadBalancerClass` ([`service`]), Ingresses by their
//! IngressClass's controller ([`ingress`]). Everything else is left alone, unless it still carries
//! our finalizer: then we clean up what we made.

pub mod ingress;
pub mod service;

pub use service::is_claimed;

#[derive(Clone, Debug)]
pub struct ClaimConfig {
    /// The `spec.loadBalancerClass` claimed.
    pub class: String,
    /// Also claim LoadBalancer Services without a class.
    pub manage_unclassed: bool,
    /// The `spec.controller` of the IngressClasses that are ours.
    pub ingress_controller: String,
}
