//! The record of an Ingress's load balancer, kept by the controller and handed back to every later
//! call. Everything in it can also be found by name; it lets `get_l7` say what is missing and
//! `delete_l7` find the instance groups' zones without a zone list.
//!
//! ```text
//!   ip                 -> the address's IP (the Ingress's status)
//!   address            -> our global address       user-address -> the user's (never released)
//!   url-map            -> the routing URL map
//!   http-rule, https-rule -> the forwarding rules of the listeners
//!   instance-group/<zone> -> the cluster's groups the backend services use
//! ```

pub use crate::record::{ADDRESS, IP, USER_ADDRESS};

pub const URL_MAP: &str = "url-map";
pub const HTTP_RULE: &str = "http-rule";
pub const HTTPS_RULE: &str = "https-rule";
