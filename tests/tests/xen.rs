//! Xen as a real multiboot2 kernel that nobody here wrote: Debian's Xen 4.17
//! hypervisor (`xen-hypervisor-4.17-amd64`, a gzip multiboot2 ELF, downloaded by
//! scripts/lib/xen.sh and never installed) booted by parkboot on the real coreboot ROM,
//! with Debian's 6.12 kernel as its dom0 (the first multiboot2 module).
//!
//! What it proves: the basic meminfo `mem_lower` is the real top of low memory, so Xen
//! puts its real-mode trampoline below parkboot's AP trampoline and not over
//! coreboot's RSDP at 0xF0000 (with `mem_lower` 0 Xen took the BIOS data area's
//! 1024 KiB, put the trampoline at 0xF0000, found no RSDP and came up with 1 CPU);
//! Xen finds the ACPI tables and brings up every CPU itself.
//!
//! Xen does not know the ACPI wakeup mailbox: it starts the parked APs with INIT/SIPI,
//! so here the INIT witness must count INIT IPIs after the park (the opposite of every
//! other test).
//!
//! Under TCG on 2 host cores, Xen reaches `Brought up 4 CPUs` 3.6 s after QEMU's start
//! (coreboot and parkboot included); the test stops QEMU there. The timeout is generous
//! for a busy host.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use parkboot_tests::rom::{base_rom, Compression, RomBuilder};
use parkboot_tests::{linux_kernel, parkboot_image, workspace_root, Boot};
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(600);
const CPUS: u32 = 4;
const MEMORY_MIB: u32 = 2048;
const XEN: &str = "parkboot/xen";
const DOM0: &str = "opt/parkboot/dom0";
/// Xen drops the first word of its command line (the image name GRUB legacy put
/// there) for every loader whose name is not GRUB 2's: `xen` is that word here.
/// `no-real-mode`: there is no BIOS under coreboot for Xen's INT 15h and video calls.
const XEN_OPTIONS: &str = "no-real-mode console=com1 com1=115200,8n1 dom0_mem=512M,max:512M";

fn xen() -> PathBuf {
    let path = std::env::var_os("PARKBOOT_XEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/xen/pkg/boot/xen-4.17-amd64.gz"));
    assert!(
        path.is_file(),
        "no Xen at {}: scripts/test downloads it (scripts/lib/xen.sh)",
        path.display()
    );
    path
}

#[test]
fn rom_xen_brings_up_every_cpu() {
    // The dom0 kernel is the entry's only module (`initrd` becomes the first module).
    let config = format!(
        "self_check = on\non_finish = qemu-exit\n[entry xen]\nkernel = cbfs:{XEN}\n\
         initrd = fw_cfg:{DOM0}\nformat = multiboot2\ncmdline = \"xen {XEN_OPTIONS}\"\n"
    );
    let rom = RomBuilder::new(base_rom(), parkboot_image())
        .config_text(config)
        .file(XEN, xen(), Compression::None)
        .build()
        .unwrap_or_else(|error| panic!("building the ROM: {error}"));
    let outcome = Boot::rom(&rom.path)
        .smp(CPUS)
        .memory_mib(MEMORY_MIB)
        .fw_cfg_file(DOM0, linux_kernel())
        .trace_init_ipis(true)
        .timeout(TIMEOUT)
        .run_with(|line, control| {
            if line.starts_with("(XEN) Brought up ") {
                control.stop();
            }
        });
    let report = outcome.report();
    assert!(
        outcome
            .find_line("started from its coreboot entry")
            .is_some(),
        "{report}"
    );
    assert!(
        outcome.find_line("(XEN) Bootloader: parkboot").is_some(),
        "{report}"
    );
    // The first word is gone, the rest is Xen's.
    let command_line = format!("(XEN) Command line: {XEN_OPTIONS}");
    assert!(
        outcome.lines().any(|line| line == command_line),
        "expected `{command_line}`\n{report}"
    );
    assert!(
        outcome.find_line("(XEN) ACPI: RSDP 000F0000").is_some(),
        "Xen must find coreboot's RSDP at 0xF0000 intact\n{report}"
    );
    assert!(
        outcome
            .find_line(&format!("(XEN) Brought up {CPUS} CPUs"))
            .is_some(),
        "{report}"
    );
    let witness = outcome.init_ipis.as_ref().expect("INIT witness");
    assert!(witness.ordered_by_serial_trace, "{witness:?}");
    assert!(
        witness.park_sipis >= 1,
        "parkboot parked the APs first: {witness:?}"
    );
    // Expected, not a failure: Xen knows no ACPI mailbox and starts the APs with
    // INIT/SIPI itself.
    assert!(
        witness.inits_after_park.is_some_and(|inits| inits > 0),
        "Xen starts its APs with INIT/SIPI: {witness:?}"
    );
}
