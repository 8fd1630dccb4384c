//! parkboot's test kernel: a park-aware multiboot2 kernel for parkboot's kexec loop.
//!
//! parkboot boots it (one boot = one iteration of the loop); each run it checks the
//! boot information parkboot built (memory map, ACPI Multiprocessor Wakeup entry, the
//! parkboot tag with the park table), wakes every parked AP through the ACPI mailbox one
//! by one and then all at once through the park table's doorbell, measures the wake
//! latencies, waits until every AP is parked again, and returns to parkboot through the
//! park table's re-entry vector with a `park::reentry::KernelReport`.
//!
//! The multiboot2 and ACPI parsers are plain byte-slice code, unit-tested on the host;
//! the rest only exists on bare metal (`--target x86_64-unknown-none`).
#![cfg_attr(target_os = "none", no_std, no_main)]
// A test kernel (and its host unit tests): an index out of range or a failed unwrap is
// a failed test (the panic handler reports it), not a boot risk.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

// The host build only runs the parsers' unit tests; the bare-metal kernel uses them.
#[cfg(any(target_os = "none", test))]
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod acpi;
#[cfg(target_os = "none")]
mod apic;
#[cfg(any(target_os = "none", test))]
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod bootinfo;
#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
mod serial;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("testkernel runs on bare metal: build it with --target x86_64-unknown-none");
}
