//! Addresses (regional and global): IP allocation, reserving an IP already used by a forwarding
//! rule ("promotion" of an ephemeral IP, which CPG relies on), conflicts, and the computed
//! `status` (`RESERVED` / `IN_USE`) and `users`.
//!
//! Deleting an address that a forwarding rule uses is allowed, as on real GCE (CPG deletes the
//! address right after creating the forwarding rule to "demote" the IP to ephemeral): the rule
//! keeps its IP. So address ← forwarding rule is not an in-use edge.
//!
//! Conflicts: an external IP held by another address answers 400 "Specified IP address is in-use
//! and would result in a conflict." synchronously; an internal one fails the operation with 409
//! `IP_IN_USE_BY_ANOTHER_RESOURCE` (the form the Go clients report as
//! "Error 409: IP_IN_USE_BY_ANOTHER_RESOURCE - IP '…' is already being used by another resource").
//! An explicit external IP must be one this project's forwarding rules already use; any other
//! answers 400, since real GCE does not let a project pick an arbitrary public IP.

use super::{Ctx, Mode, default, one_of, str_field};
use crate::collections::Coll;
use crate::errors::{ApiError, ApiResult};
use crate::ips::Pool;
use crate::links::Key;
use crate::store::State;
use serde_json::{Value, json};
use std::net::Ipv4Addr;

pub fn check(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    if ctx.mode != Mode::Insert {
        return Ok(());
    }
    default(v, "addressType", json!("EXTERNAL"));
    one_of(v, "addressType", &["EXTERNAL", "INTERNAL"])?;
    one_of(v, "networkTier", &["PREMIUM", "STANDARD"])?;
    one_of(v, "ipVersion", &["IPV4"])?;
    let internal = str_field(v, "addressType") == Some("INTERNAL");
    if internal {
        default(v, "purpose", json!("GCE_ENDPOINT"));
    } else {
        default(v, "networkTier", json!("PREMIUM"));
    }
    super::normalize_networks(ctx, v);
    let global = ctx.global();
    match str_field(v, "address").map(str::to_string) {
        None => {
            let pool = match (internal, global) {
                (true, _) => Pool::Internal,
                (false, true) => Pool::ExternalGlobal,
                (false, false) => Pool::ExternalRegional,
            };
            let ip = ctx
                .st
                .pools
                .allocate(pool, &ctx.st.taken_ips())
                .ok_or_else(|| ApiError::quota("STATIC_ADDRESSES", &ctx.st.region))?;
            v["address"] = json!(ip.to_string());
        }
        Some(text) => {
            let ip: Ipv4Addr = text
                .parse()
                .map_err(|_| ApiError::invalid_field("resource.address", &text, "Must be a valid IPv4 address."))?;
            v["address"] = json!(ip.to_string());
            check_explicit_ip(ctx, ip, internal)?;
        }
    }
    Ok(())
}

fn check_explicit_ip(ctx: &mut Ctx, ip: Ipv4Addr, internal: bool) -> ApiResult<()> {
    let st = ctx.st;
    let text = ip.to_string();
    let held_by = |colls: &[Coll]| -> Vec<(Key, Value)> {
        let field = |k: &Key| match k.coll {
            Coll::Address | Coll::GlobalAddress => "address",
            Coll::Instance => "networkInterfaces",
            _ => "IPAddress",
        };
        let mut out = Vec::new();
        for (k, v) in st.resources.iter().chain(st.pending_puts()) {
            if !colls.contains(&k.coll) {
                continue;
            }
            let hit = match field(k) {
                "networkInterfaces" => {
                    v.pointer("/networkInterfaces/0/networkIP").and_then(Value::as_str) == Some(&text)
                }
                f => str_field(v, f) == Some(&text),
            };
            if hit {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    };
    if !held_by(&[Coll::Address, Coll::GlobalAddress]).is_empty() {
        if internal {
            ctx.deferred = Some(ApiError::internal_ip_in_use(&text));
            return Ok(());
        }
        return Err(ApiError::invalid_field(
            "resource.address",
            &text,
            "Specified IP address is in-use and would result in a conflict.",
        ));
    }
    if internal {
        if !held_by(&[Coll::Instance]).is_empty() {
            ctx.deferred = Some(ApiError::internal_ip_in_use(&text));
        }
        return Ok(());
    }
    // External: only promotion of an IP a forwarding rule of the same scope already uses.
    let same_scope = |k: &Key| {
        if ctx.global() {
            k.coll == Coll::GlobalForwardingRule
        } else {
            k.coll == Coll::ForwardingRule && k.loc == ctx.key.loc
        }
    };
    let frs = held_by(&[Coll::ForwardingRule, Coll::GlobalForwardingRule]);
    if frs.iter().any(|(k, _)| same_scope(k)) {
        return Ok(());
    }
    if !frs.is_empty() {
        return Err(ApiError::invalid_field(
            "resource.address",
            &text,
            "Specified IP address is in-use and would result in a conflict.",
        ));
    }
    Err(ApiError::invalid_field(
        "resource.address",
        &text,
        "Specified IP address is not available to this project: only an IP already used by one of its forwarding rules can be reserved.",
    ))
}

/// Self-links of the forwarding rules (same scope) that use this address's IP.
pub fn users(st: &State, key: &Key, v: &Value) -> Vec<String> {
    let Some(ip) = str_field(v, "address") else { return Vec::new() };
    let coll = if key.coll == Coll::GlobalAddress { Coll::GlobalForwardingRule } else { Coll::ForwardingRule };
    let loc = if key.coll == Coll::GlobalAddress { "" } else { key.loc.as_str() };
    st.list(coll, loc)
        .filter(|(_, fr)| str_field(fr, "IPAddress") == Some(ip))
        .map(|(k, _)| k.self_link(&st.project))
        .collect()
}

/// The address (same scope as a forwarding rule at `fr_key`) holding `ip`, if reserved.
pub fn reserved(st: &State, fr_key: &Key, ip: &str) -> Option<(Key, Value)> {
    let (coll, loc) = if fr_key.coll == Coll::GlobalForwardingRule {
        (Coll::GlobalAddress, "")
    } else {
        (Coll::Address, fr_key.loc.as_str())
    };
    st.list(coll, loc).find(|(_, a)| str_field(a, "address") == Some(ip)).map(|(k, v)| (k.clone(), v.clone()))
}
