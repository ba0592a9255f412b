//! Link settings of the `cloudlb` binary.
//!
//! On Linux with GNU ld, relative relocations are packed (`-z pack-relative-relocs`, DT_RELR):
//! the PIE binary carries about 75,000 of them, which as plain RELA entries are 1.7 MiB that the
//! dynamic loader reads at every start and that stay mapped (resident) for the life of the
//! process; packed, they are a few KiB. The binary keeps being position independent (ASLR). It
//! needs glibc 2.36 or newer at run time (Debian 12, Ubuntu 22.10, RHEL 10), which the loader
//! checks by symbol version (`GLIBC_ABI_DT_RELR`) and names if it is missing.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
