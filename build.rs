//! Link settings of the `cloudlb` binary.
//!
//! On Linux with GNU ld, relative relocations are packed (`-z pack-relative-relocs`, DT_RELR):
//! the PIE binary carries about 75,000 of them, which as plain RELA entries are 1.7 MiB that the
//! dynamic loader reads at every start and that stay mapped (resident) for the life of the
//! process; packed, they are a few KiB. The binary keeps being position independent (ASLR). It
//! needs glibc 2.36 or newer at run time (Debian 12, Ubuntu 22.10, RHEL 10), which the loader
//! checks by symbol version (`GLIBC_ABI_DT_RELR`) and names if it is missing.

//!
//! The commit the binary is built from goes into `cloudlb --version` and the `build_info`
//! metric: `$CLOUDLB_COMMIT` when set (the Dockerfile passes its `VCS_REF`), else
//! `git rev-parse` of the checkout, else `unknown`. The build script runs again when that
//! variable or the checked-out branch changes; an incremental build after a new commit on the
//! same branch keeps the commit of its last build script run (release and CI builds are fresh).

fn commit() -> String {
    if let Ok(c) = std::env::var("CLOUDLB_COMMIT")
        && !c.trim().is_empty()
    {
        return c.trim().to_string();
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CLOUDLB_COMMIT");
    if std::path::Path::new(".git/HEAD").exists() {
        println!("cargo::rerun-if-changed=.git/HEAD");
    }
    println!("cargo::rustc-env=CLOUDLB_COMMIT={}", commit());
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
