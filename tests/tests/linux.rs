//! An unmodified distribution kernel (Debian's 6.12) booted by parkboot: its CPUs come
//! from parkboot's ACPI mailbox instead of INIT/SIPI, across Linux's own kexec
//! reboots. `scripts/test` downloads the kernel and builds the initramfs first
//! (scripts/lib/linux.sh); their paths can also be given with PARKBOOT_LINUX_KERNEL and
//! PARKBOOT_LINUX_INITRD.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::{linux_initrd, linux_kernel, parkboot_image, test_kernel, Boot, Outcome};
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(900);
const CPUS: u32 = 4;
const LOOPS: u32 = 5;
const MEMORY_MIB: u32 = 1024;

fn config(park: bool) -> String {
    format!(
        "park = {}\nself_check = on\non_finish = qemu-exit\n[entry linux]\nkernel = fw_cfg:opt/parkboot/kernel\ninitrd = fw_cfg:opt/parkboot/initrd\nformat = linux\ncmdline = \"console=ttyS0 panic=-1 quiet loglevel=4 parkboot.qemu_exit=on\"\niterations = {LOOPS}\n",
        if park { "on" } else { "off" }
    )
}

fn linux_loop(park: bool) -> Outcome {
    Boot::new(parkboot_image())
        .smp(CPUS)
        .memory_mib(MEMORY_MIB)
        .config_text(config(park))
        .fw_cfg_file("opt/parkboot/kernel", linux_kernel())
        .fw_cfg_file("opt/parkboot/initrd", linux_initrd())
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run()
}

/// The run passed and printed LOOPS iteration lines, each with every CPU online.
fn every_iteration_with_all_cpus(outcome: &Outcome) -> Vec<&str> {
    outcome.assert_pass();
    let lines: Vec<&str> = outcome
        .lines()
        .filter(|l| l.contains("parkboot-linux: iteration "))
        .collect();
    assert_eq!(lines.len() as u32, LOOPS, "{}", outcome.report());
    for line in &lines {
        assert!(
            line.contains(&format!("cpus online {CPUS}/{CPUS}")),
            "{line}"
        );
    }
    lines
}

#[test]
fn debian_kernel_kexec_loop_wakes_parked_cpus_from_the_mailbox() {
    let outcome = linux_loop(true);
    for line in every_iteration_with_all_cpus(&outcome) {
        assert!(line.contains("woken from the mailbox"), "{line}");
        assert!(line.contains("INIT-SIPI-SIPI starts 1"), "{line}");
    }
    let witness = outcome.init_ipis.as_ref().expect("INIT witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
}

#[test]
fn baseline_without_parking_brings_cpus_up_with_init_sipi() {
    let outcome = linux_loop(false);
    for line in every_iteration_with_all_cpus(&outcome) {
        assert!(!line.contains("mailbox"), "{line}");
    }
    let witness = outcome.init_ipis.as_ref().expect("INIT witness");
    // Linux sends INIT (assert and de-assert) to each AP itself on every boot.
    assert!(
        witness.total_inits >= 2 * (CPUS as u64 - 1) * LOOPS as u64,
        "the kernel should have used INIT/SIPI: {witness:?}"
    );
    let summary = outcome.summary.as_deref().unwrap_or("{}");
    let members: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(summary).unwrap();
    assert!(
        members
            .iter()
            .any(|(k, v)| k == "park" && v.as_bool() == Some(false)),
        "{summary}"
    );
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("parkboot-linux-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn bad_linux_images_are_refused_and_the_next_entry_boots() {
    const PROTOCOL_VERSION: usize = 0x206;
    const INIT_SIZE: usize = 0x260;
    const CMDLINE_SIZE: usize = 0x238;
    const SHORT_CMDLINE_LIMIT: u32 = 255;
    let kernel = std::fs::read(linux_kernel()).unwrap();
    let not_bzimage = temp_file("not-a-bzimage", &vec![0x5au8; 64 * 1024]);
    let mut old = kernel.clone();
    old[PROTOCOL_VERSION..PROTOCOL_VERSION + 2].copy_from_slice(&0x020au16.to_le_bytes());
    let old = temp_file("protocol-2.10", &old);
    let mut huge = kernel.clone();
    huge[INIT_SIZE..INIT_SIZE + 4].copy_from_slice(&0xf000_0000u32.to_le_bytes());
    let huge = temp_file("huge-init-size", &huge);
    let mut short = kernel.clone();
    short[CMDLINE_SIZE..CMDLINE_SIZE + 4].copy_from_slice(&SHORT_CMDLINE_LIMIT.to_le_bytes());
    let short = temp_file("short-cmdline-limit", &short);
    let long_cmdline = "x".repeat(2 * SHORT_CMDLINE_LIMIT as usize);
    let config = format!(
        "self_check = off\non_finish = qemu-exit\n\
         [entry not-bzimage]\nkernel = fw_cfg:opt/parkboot/bad1\nformat = linux\n\
         [entry old-protocol]\nkernel = fw_cfg:opt/parkboot/bad2\nformat = linux\n\
         [entry too-big]\nkernel = fw_cfg:opt/parkboot/bad3\nformat = linux\n\
         [entry long-cmdline]\nkernel = fw_cfg:opt/parkboot/bad4\nformat = linux\ncmdline = \"{long_cmdline}\"\n\
         [entry good]\nkernel = fw_cfg:opt/parkboot/kernel\nformat = multiboot2\n"
    );
    let outcome = Boot::new(parkboot_image())
        .smp(2)
        .memory_mib(MEMORY_MIB)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/bad1", not_bzimage)
        .fw_cfg_file("opt/parkboot/bad2", old)
        .fw_cfg_file("opt/parkboot/bad3", huge)
        .fw_cfg_file("opt/parkboot/bad4", short)
        .fw_cfg_file("opt/parkboot/kernel", test_kernel("testkernel"))
        .timeout(TIMEOUT)
        .run();
    let error = |entry: &str| {
        outcome
            .find_line(&format!("ERROR: entry '{entry}'"))
            .unwrap_or_else(|| panic!("no error for {entry}\n{}", outcome.report()))
            .to_string()
    };
    assert!(
        error("not-bzimage").contains("not a bzImage"),
        "{}",
        error("not-bzimage")
    );
    assert!(
        error("old-protocol").contains("2.10"),
        "{}",
        error("old-protocol")
    );
    assert!(
        error("too-big").contains("0xf0000000")
            || error("too-big").contains("does not fit")
            || error("too-big").contains("no free"),
        "{}",
        error("too-big")
    );
    assert!(
        error("long-cmdline").contains("command line"),
        "{}",
        error("long-cmdline")
    );
    assert!(
        outcome
            .find_line("entry 'good' iteration 1/1: back after")
            .is_some(),
        "the good entry must still boot\n{}",
        outcome.report()
    );
    assert!(!outcome.passed());
}

/// cbshim adds APIC ID 7 to the MADT: listed and enabled, but no such CPU exists, so it
/// never reaches the park loop. Unmodified Linux has no timeout in its mailbox wakeup
/// (`acpi_wakeup_cpu`): if the kernels' MADT still advertised the ghost, Linux would
/// wait for it forever. parkboot withholds it, so every kernel of the kexec loop comes
/// up with the CPUs that exist.
#[test]
fn debian_kernel_comes_up_without_a_cpu_that_never_parked() {
    const GHOST_LOOPS: u32 = 2;
    const GHOST_TIMEOUT: Duration = Duration::from_secs(300);
    let config = format!(
        "self_check = on\non_finish = qemu-exit\nap_timeout_ms = 200\n[entry linux]\nkernel = fw_cfg:opt/parkboot/kernel\ninitrd = fw_cfg:opt/parkboot/initrd\nformat = linux\ncmdline = \"console=ttyS0 panic=-1 quiet loglevel=4 parkboot.qemu_exit=on\"\niterations = {GHOST_LOOPS}\n"
    );
    let outcome = Boot::new(test_kernel("cbshim"))
        .initrd(parkboot_image())
        .append("cbshim.ghost-cpu")
        .smp(CPUS)
        .memory_mib(MEMORY_MIB)
        .config_text(config)
        .fw_cfg_file("opt/parkboot/kernel", linux_kernel())
        .fw_cfg_file("opt/parkboot/initrd", linux_initrd())
        .trace_init_ipis(true)
        .timeout(GHOST_TIMEOUT)
        .run();
    outcome.assert_pass();
    assert!(
        outcome
            .find_line("ERROR: CPU with APIC ID 7 did not reach the park loop")
            .is_some(),
        "{}",
        outcome.report()
    );
    let withheld = outcome
        .find_line("APIC ID 7 withheld from the kernels' MADT")
        .unwrap_or_else(|| panic!("the ghost CPU is not withheld\n{}", outcome.report()));
    assert!(withheld.contains("not responding"), "{withheld}");
    let lines: Vec<&str> = outcome
        .lines()
        .filter(|l| l.contains("parkboot-linux: iteration "))
        .collect();
    assert_eq!(lines.len() as u32, GHOST_LOOPS, "{}", outcome.report());
    for line in &lines {
        assert!(
            line.contains(&format!("cpus online {CPUS}/{CPUS}")),
            "{line}"
        );
        assert!(line.contains("woken from the mailbox"), "{line}");
    }
    let witness = outcome.init_ipis.as_ref().expect("INIT witness");
    assert_eq!(witness.inits_after_park, Some(0), "{witness:?}");
}
