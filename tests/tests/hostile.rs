//! Hostile kernel images through `scripts/run`'s runner: every one ends the run with the
//! guest's failure code, a named error in the `--json` line and QEMU gone, never a
//! triple fault and never a run that sits out its timeout.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::{linux_kernel, parkboot_image, test_kernel, workspace_root, Boot};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Upper bound on each run; a run that reaches it fails the test (`"exit":"timeout"`).
const TIMEOUT_SECS: &str = "120";

/// Deterministic bytes that are no kernel format (xorshift64*).
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parkboot-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The JSON members of the last line of a `parkboot-run --json` run with `args`.
fn run_json(config: &Path, kernel: &Path, args: &[&str]) -> (Members, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_parkboot-run"))
        .arg("--image")
        .arg(parkboot_image())
        .arg("--config")
        .arg(config)
        .arg("--kernel")
        .arg(kernel)
        .args(["--json", "--trace-init-ipis", "--timeout", TIMEOUT_SECS])
        .args(args)
        .output()
        .expect("parkboot-run starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!output.status.success(), "the run must fail:\n{stdout}");
    let last = stdout.lines().last().unwrap_or("");
    let members = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}):\n{stdout}"));
    (members, stdout)
}

/// The JSON object of a summary line.
type Members = serde_json::Map<String, serde_json::Value>;

/// The value of `key` as JSON text.
fn member(members: &Members, key: &str) -> Option<String> {
    members.get(key).map(serde_json::Value::to_string)
}

/// `"ok":false`, the guest's own failure exit (not a reset, not the timeout) and an
/// `error` that contains `named`.
fn assert_refused(members: &Members, stdout: &str, named: &str) {
    assert_eq!(member(members, "ok").as_deref(), Some("false"), "{stdout}");
    assert_eq!(
        member(members, "exit").as_deref(),
        Some("\"fail\""),
        "{stdout}"
    );
    let error = member(members, "error").unwrap_or_else(|| panic!("no error member:\n{stdout}"));
    assert!(error.contains(named), "error {error} should name {named}");
    // The parked CPUs were never disturbed by the refused image.
    assert_eq!(
        member(members, "init_ipis_after_park").as_deref(),
        Some("0"),
        "{stdout}"
    );
}

#[test]
fn garbage_as_the_multiboot2_kernel_is_refused_by_name() {
    let kernel = temp_file("garbage-mb2", &garbage(3000, 0x1234_5678_9abc_def1));
    let config = workspace_root().join("configs/default.cfg");
    let (members, stdout) = run_json(&config, &kernel, &[]);
    assert_refused(&members, &stdout, "no multiboot2 header");
    // The loop report shows nothing measured for the refused entry, not zeros.
    let row = stdout
        .lines()
        .find(|l| l.contains("  test-kernel ") && l.ends_with("FAILED"))
        .unwrap_or_else(|| panic!("no report row for the refused entry:\n{stdout}"));
    assert!(
        row.contains("  test-kernel                  1   -  ")
            && row.contains("  - / - / -  ")
            && row.ends_with("  -  FAILED"),
        "{row}"
    );
    assert!(!row.contains("0 ns"), "{row}");
}

#[test]
fn garbage_as_the_linux_kernel_is_refused_by_name() {
    let kernel = temp_file("garbage-linux", &garbage(3000, 0x0fed_cba9_8765_4321));
    let config = workspace_root().join("configs/linux.cfg");
    let initrd = temp_file("small-initrd", &[0u8; 512]);
    let (members, stdout) = run_json(
        &config,
        &kernel,
        &[
            "--memory",
            "1024",
            "--initrd",
            initrd.to_str().expect("UTF-8 temp path"),
        ],
    );
    assert_refused(&members, &stdout, "not a bzImage");
}

/// The reproduction: Debian's vmlinuz cut to 1 MB was entered and
/// triple-faulted; its header's syssize now refuses it before anything is copied.
#[test]
fn debian_kernel_cut_to_one_megabyte_is_refused_by_name() {
    let kernel = std::fs::read(linux_kernel()).unwrap();
    let cut = temp_file("vmlinuz-1mb", &kernel[..1_000_000]);
    let config = workspace_root().join("configs/linux.cfg");
    let initrd = temp_file("small-initrd", &[0u8; 512]);
    let (members, stdout) = run_json(
        &config,
        &cut,
        &[
            "--memory",
            "1024",
            "--initrd",
            initrd.to_str().expect("UTF-8 temp path"),
        ],
    );
    assert_refused(&members, &stdout, "truncated bzImage");
}

/// The park-aware test kernel, gzip-compressed by the host's `gzip`.
fn gzip_test_kernel() -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-9c")
        .arg(test_kernel("testkernel"))
        .output()
        .expect("gzip runs");
    assert!(out.status.success());
    out.stdout
}

/// A truncated gzip kernel once sized its buffer from whatever bytes ended the file
/// ("no free 0x2a1da462 bytes"); the stream itself now says it is cut short.
#[test]
fn truncated_gzip_kernel_is_refused_by_name() {
    let packed = gzip_test_kernel();
    let kernel = temp_file("truncated.gz", &packed[..packed.len() * 2 / 3]);
    let config = workspace_root().join("configs/default.cfg");
    let (members, stdout) = run_json(&config, &kernel, &[]);
    assert_refused(&members, &stdout, "gzip data corrupt or truncated");
}

/// Two flipped bytes once read as "output buffer too small"; they are corruption.
#[test]
fn gzip_kernel_with_flipped_bytes_says_corrupt() {
    let mut packed = gzip_test_kernel();
    let at = packed.len() / 2;
    packed[at] ^= 0x10;
    packed[at + 1] ^= 0x01;
    let kernel = temp_file("flipped.gz", &packed);
    let config = workspace_root().join("configs/default.cfg");
    let (members, stdout) = run_json(&config, &kernel, &[]);
    assert_refused(&members, &stdout, "gzip data corrupt");
}

/// Debian's 6.12 kernel with its version string rewritten to `release` (same length)
/// and its command-line limit cut to a few bytes, so that parkboot reads the version,
/// then refuses the entry at once instead of spending a whole Linux boot.
fn kernel_claiming(release: &[u8; 9]) -> PathBuf {
    const KERNEL_VERSION_POINTER: usize = 0x20e;
    const CMDLINE_SIZE: usize = 0x238;
    let mut kernel = std::fs::read(linux_kernel()).unwrap();
    let pointer = u16::from_le_bytes([
        kernel[KERNEL_VERSION_POINTER],
        kernel[KERNEL_VERSION_POINTER + 1],
    ]) as usize
        + 0x200;
    assert_eq!(
        &kernel[pointer..pointer + 5],
        b"6.12.",
        "a Debian 6.12 kernel"
    );
    kernel[pointer..pointer + release.len()].copy_from_slice(release);
    kernel[CMDLINE_SIZE..CMDLINE_SIZE + 4].copy_from_slice(&8u32.to_le_bytes());
    temp_file(
        &format!("vmlinuz-{}", String::from_utf8_lossy(release)),
        &kernel,
    )
}

fn boot_linux_entry(kernel: PathBuf, park: bool) -> parkboot_tests::Outcome {
    let config = format!(
        "park = {}\nself_check = off\non_finish = qemu-exit\n\
         [entry linux]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = linux\ncmdline = \"console=ttyS0\"\n",
        if park { "on" } else { "off" }
    );
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .memory_mib(1024)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", kernel)
        .timeout(std::time::Duration::from_secs(120))
        .run();
    // The entry was read, then refused for its command line: the run ends at once.
    assert!(
        outcome.find_line("command line is").is_some(),
        "{}",
        outcome.report()
    );
    outcome
}

/// A Linux older than 6.11 never hands the parked CPUs back, so its kexec successor
/// hangs in acpi_wakeup_cpu: parkboot says so when it boots one with parking on.
#[test]
fn pre_6_11_linux_with_parking_gets_a_warning() {
    const WARNING: &str = "does not hand the parked CPUs back";
    let old = boot_linux_entry(kernel_claiming(b"6.1.0-117"), true);
    let line = old
        .find_line(WARNING)
        .unwrap_or_else(|| panic!("no warning for Linux 6.1:\n{}", old.report()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("Linux 6.1 is older than 6.11"), "{line}");
    assert!(line.contains("acpi_wakeup_cpu"), "{line}");

    let without_parking = boot_linux_entry(kernel_claiming(b"6.1.0-117"), false);
    assert!(
        without_parking.find_line(WARNING).is_none(),
        "{}",
        without_parking.report()
    );
    let new = boot_linux_entry(kernel_claiming(b"6.12.117+"), true);
    assert!(new.find_line(WARNING).is_none(), "{}", new.report());
    assert!(
        new.find_line("no Linux release").is_none(),
        "{}",
        new.report()
    );
}
