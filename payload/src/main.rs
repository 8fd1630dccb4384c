//! parkboot, the bare-metal binary. Thin on purpose: it wires hardware to the
//! host-tested library (`parkboot::*`). Its modules live in `bare_metal/`, in the order
//! of the boot flow:
//! - `startup.rs`: from the entry code (`entry.S`) to the parked APs: platform,
//!   configuration, memory map, page tables, MADT;
//! - `parking.rs`: starting every AP once and parking it behind the wakeup mailbox;
//! - `kernel_tables.rs`: the ACPI tables kernels get (parked APs only);
//! - `kexec_loop/`: loading and booting each entry's kernel over and over, taking the
//!   boot processor back through the re-entry vector (`reentry.S`);
//! - `misbehaviour.rs`: what a returning kernel did to the park table and the APs;
//! - `arch/`: CPU, local APIC, console, exceptions, stopping; used by all the above,
//!   using none of them.
#![cfg_attr(target_os = "none", no_std, no_main)]

// The library (lib.rs) owns the folders beside this file; the binary's own modules
// live in bare_metal/, so neither crate's modules shadow the other's.
#[cfg(target_os = "none")]
#[path = "bare_metal/arch/mod.rs"]
mod arch;
#[cfg(target_os = "none")]
#[path = "bare_metal/kernel_tables.rs"]
mod kernel_tables;
#[cfg(target_os = "none")]
#[path = "bare_metal/kexec_loop/mod.rs"]
mod kexec_loop;
#[cfg(target_os = "none")]
#[path = "bare_metal/misbehaviour.rs"]
mod misbehaviour;
#[cfg(target_os = "none")]
#[path = "bare_metal/parking.rs"]
mod parking;
#[cfg(target_os = "none")]
#[path = "bare_metal/startup.rs"]
mod startup;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("parkboot runs on bare metal: build it with --target x86_64-unknown-none");
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    arch::console::write_raw(format_args!("\nparkboot: panic: {}\n", info));
    arch::finish::stop(format_args!("panic"))
}
