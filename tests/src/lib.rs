//! Host-side QEMU harness for parkboot.
//!
//! [`Boot`] describes one QEMU run of a parkboot image (or a test kernel), [`Boot::run`]
//! and [`Boot::run_with`] start QEMU, read the guest's serial console line by line as
//! it arrives and return an [`Outcome`]. The integration tests in `tests/tests/` and
//! the `parkboot-run` program behind `scripts/run` are built on it.
//!
//! # Pass condition
//!
//! The guest states its verdict twice: it prints a line containing
//! `parkboot: result: pass` (or `parkboot: result: FAIL: <why>`) on the serial console,
//! then writes [`EXIT_PASS`] (or [`EXIT_FAIL`]) to the isa-debug-exit port 0xf4. A run
//! passes only when both agree: exit status PASS **and** the pass line was seen.
//!
//! ```no_run
//! use parkboot_tests::{parkboot_image, Boot};
//! use std::time::Duration;
//!
//! let outcome = Boot::new(parkboot_image())
//!     .smp(4)
//!     .trace_init_ipis(true)
//!     .timeout(Duration::from_secs(30))
//!     .run();
//! outcome.assert_pass();
//! assert_eq!(outcome.init_ipis.unwrap().inits_after_park, Some(0));
//! ```
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

pub mod cbmem;
mod outcome;
mod qemu;
pub mod rom;
pub mod witness;

#[cfg(test)]
mod guest;

use std::path::PathBuf;

pub use outcome::{ExitStatusKind, Outcome};
pub use qemu::{Boot, Control, Start};
pub use witness::InitIpiWitness;

/// Value the guest writes to the isa-debug-exit port (0xf4) to report a pass.
/// QEMU then exits with status `(0x10 << 1) | 1 = 33`.
pub const EXIT_PASS: u8 = 0x10;
/// Value the guest writes to the isa-debug-exit port (0xf4) to report a failure.
/// QEMU then exits with status `(0x11 << 1) | 1 = 35`.
pub const EXIT_FAIL: u8 = 0x11;
/// I/O port of the isa-debug-exit device that every run adds.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What the guest's console puts before every error-level log message.
pub const ERROR_MARKER: &str = "ERROR: ";
/// Serial marker of a passing run.
pub const PASS_MARKER: &str = "parkboot: result: pass";
/// Serial marker of a failing run, followed by the reason.
pub const FAIL_MARKER: &str = "parkboot: result: FAIL: ";
/// Serial marker of the one-line JSON summary, followed by the JSON object.
pub const SUMMARY_MARKER: &str = "parkboot: summary: ";
/// Serial marker printed when parkboot halts on an error, followed by the reason.
pub const STOPPED_MARKER: &str = "parkboot: stopped: ";
/// Serial marker that announces the park trampoline and its SIPI vector.
pub const STARTING_APS_MARKER: &str = "parkboot: starting APs: ";

/// The fw_cfg file name parkboot reads its configuration from.
pub const CONFIG_FW_CFG_NAME: &str = "opt/parkboot/config";

/// Exit status of QEMU when the guest wrote `value` to the isa-debug-exit port.
pub const fn debug_exit_status(value: u8) -> i32 {
    ((value as i32) << 1) | 1
}

/// The workspace root (the directory above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Where a bare-metal release binary of the workspace may be, in order:
/// `$CARGO_TARGET_DIR/x86_64-unknown-none/release/<name>` when `CARGO_TARGET_DIR` is
/// set, then `target/x86_64-unknown-none/release/<name>` under the workspace root.
pub fn release_binary_candidates(name: &str) -> Vec<PathBuf> {
    let in_target = |dir: PathBuf| dir.join("x86_64-unknown-none").join("release").join(name);
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        candidates.push(in_target(workspace_root().join(dir)));
    }
    let default = in_target(workspace_root().join("target"));
    if !candidates.contains(&default) {
        candidates.push(default);
    }
    candidates
}

/// Path of a bare-metal release binary of the workspace: the first of
/// [`release_binary_candidates`] that exists, else
/// `target/x86_64-unknown-none/release/<name>` under the workspace root.
pub fn release_binary_path(name: &str) -> PathBuf {
    let mut candidates = release_binary_candidates(name);
    match candidates.iter().position(|path| path.is_file()) {
        Some(found) => candidates.swap_remove(found),
        None => candidates
            .pop()
            .expect("the workspace target is a candidate"),
    }
}

/// Path of the parkboot image (`PARKBOOT_IMAGE` when set, else
/// [`release_binary_path`]`("parkboot")`), without checking that it exists.
pub fn parkboot_image_path() -> PathBuf {
    match std::env::var_os("PARKBOOT_IMAGE") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => release_binary_path("parkboot"),
    }
}

/// The parkboot ELF image to boot. Panics with the build command if it is missing.
pub fn parkboot_image() -> PathBuf {
    let path = parkboot_image_path();
    if !path.is_file() {
        panic!(
            "parkboot image {} not found: build parkboot first: scripts/test does it \
             (cargo build -p parkboot --release --target x86_64-unknown-none)",
            path.display()
        );
    }
    path
}

/// A test kernel of the workspace (`target/x86_64-unknown-none/release/<name>`).
/// Panics with the build command if it is missing.
pub fn test_kernel(name: &str) -> PathBuf {
    let path = release_binary_path(name);
    if !path.is_file() {
        panic!(
            "test kernel {} not found: build it first: scripts/test does it \
             (cargo build -p {name} --release --target x86_64-unknown-none)",
            path.display()
        );
    }
    path
}

/// Debian's 6.12 kernel: `PARKBOOT_LINUX_KERNEL`, else the one scripts/lib/linux.sh
/// unpacked under target/linux/kernel.
pub fn linux_kernel() -> PathBuf {
    if let Some(path) = std::env::var_os("PARKBOOT_LINUX_KERNEL") {
        return path.into();
    }
    let kernels = workspace_root().join("target/linux/kernel");
    std::fs::read_dir(&kernels)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|package| {
            std::fs::read_dir(package.path().join("boot"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-6.12"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no Debian 6.12 kernel under {}: scripts/test downloads it",
                kernels.display()
            )
        })
}

/// An initramfs scripts/test builds: from the environment variable `env`, else
/// target/linux/`file`.
fn built_initramfs(env: &str, file: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/linux").join(file));
    assert!(
        path.is_file(),
        "no initramfs at {}: scripts/test builds it",
        path.display()
    );
    path
}

/// The kexec loop's initramfs (it carries the kernel for the next kexec).
pub fn linux_initrd() -> PathBuf {
    built_initramfs("PARKBOOT_LINUX_INITRD", "initramfs.cpio.gz")
}

/// The initramfs without the kernel inside, for single boots.
pub fn linux_single_boot_initrd() -> PathBuf {
    built_initramfs("PARKBOOT_LINUX_INITRD_SINGLE", "initramfs-single.cpio.gz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_statuses() {
        assert_eq!(debug_exit_status(EXIT_PASS), 33);
        assert_eq!(debug_exit_status(EXIT_FAIL), 35);
    }

    #[test]
    fn release_paths_are_under_the_workspace() {
        let path = release_binary_path("cbshim");
        assert!(path.ends_with("x86_64-unknown-none/release/cbshim"));
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
