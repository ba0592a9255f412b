//! Link settings of the `cloudlb` binary.
//!
//! On Linux with GNU ld, relative relocations are packed (`-z pack-relative-relocs`, DT_RELR):
//! the PIE binary carries about 75,000 of them, which as plain RELA entries are 1.7 MiB that the
//! dynamic loader reads at every start and that stay mapped (resident) for the life of the
//! process; packed, they are a few KiB. The binary keeps being position independent (ASLR). It
//! needs glibc 2.36 or newer at run time (Debian 12, Ubuntu 22.10, RHEL 10), which the loader
//! checks by symbol version (`GLIBC_ABI_DT_RELR`) and names if it is missing.
//!
//! When the linker is LLD, the functions the controller runs are laid out first, together
//! (`--symbol-ordering-file=link/cloudlb.order`). The kernel maps a program's text in 64 KiB
//! windows around each page that runs (fault-around), so where the few thousand functions that
//! run are spread over the 37 MiB of text, nearly every window they touch is resident: 13.6 MiB
//! of text with 1,000 load balancers, against 3.5 MiB of functions that ran. Laid out together
//! they are 3.9 MiB resident (benches/README.md). `link/order.sh` records the list (valgrind's
//! callgrind over the benchmark and the end-to-end tests); a function missing from it, e.g. one
//! written since, only lands among the rest, so a stale list costs memory, never correctness.
//! LLD is what rustc 1.90 and later link x86_64-unknown-linux-gnu with unless a linker is
//! configured; any other linker, target or a configured linker gets no ordering (GNU ld does not
//! know the option).
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
    println!("cargo::rerun-if-changed={ORDER_FILE}");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let order = format!("{dir}/{ORDER_FILE}");
    if links_with_rust_lld() && std::path::Path::new(&order).exists() {
        println!("cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={order}");
        // Symbols of the list that this build does not have (a debug build, code changed
        // since the list was recorded) are expected.
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// The functions that run, in the order they are laid out (see the module docs).
const ORDER_FILE: &str = "link/cloudlb.order";

/// Whether rustc links with its own LLD: the default for x86_64-unknown-linux-gnu since rustc
/// 1.90, unless a linker is configured (`RUSTC_LINKER` is set for `target.<t>.linker` and
/// `CARGO_TARGET_<T>_LINKER`) or flags choose one (`-C linker=`, `-C linker-features=`,
/// `-C link-self-contained=`, `-fuse-ld=`).
fn links_with_rust_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || std::env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "link-self-contained", "fuse-ld"].iter().any(|f| flags.contains(f)) {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut numbers = version.split_whitespace().nth(1).unwrap_or("").split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
