//! Booting a Linux bzImage through the 64-bit boot protocol. Linux drives its own kexec
//! loop from there: parkboot boots it once per iteration of its entry schedule and
//! tells it, on the command line, where the park table is and how many kexec
//! iterations the entry asks for.

use super::state::{log_summary_so_far, BootState, EntryError, Image};
use crate::arch::identity::IdentityRegions;
use core::convert::Infallible;
use core::sync::atomic::Ordering;
use parkboot::config::Entry;
use parkboot::kernels::linux::{self, prepare};

pub fn boot_linux(
    s: &mut BootState,
    entry: &Entry,
    image: Image,
    initrd: Option<Image>,
    iterations: u32,
) -> Result<Infallible, EntryError> {
    let bytes = image.bytes();
    let kernel = linux::parse(bytes)?;
    if s.parked.is_some() {
        warn_if_no_handback(entry, &kernel);
    }
    let cmdline = prepare::command_line(
        entry.cmdline.as_str(),
        s.parked.as_ref().map(|parked| parked.layout.table),
        iterations,
        s.cpus,
    );
    let prepared = prepare::prepare(
        &mut s.memory,
        &mut IdentityRegions,
        &kernel,
        bytes,
        initrd.map(|initrd| initrd.bytes()),
        &cmdline,
        s.kernel_rsdp,
    )
    .map_err(|e| match e {
        prepare::PrepareError::Memory(e) => EntryError::Memory(e),
        prepare::PrepareError::Linux(e) => EntryError::Linux(e),
    })?;
    let (load, entry_point, params) = (prepared.load, prepared.entry_point, prepared.boot_params);
    let (initrd_range, count) = (prepared.initrd, prepared.e820_entries);
    log::info!(
        "entry '{}': Linux {} (boot protocol {}.{:02}) at {:#x}, initrd {}, {} e820 ranges, RSDP {:#x}; entering at {:#x}",
        entry.name,
        kernel.kernel_version.as_str(),
        kernel.version >> 8,
        kernel.version & 0xff,
        load,
        InitrdText(initrd_range),
        count,
        s.kernel_rsdp,
        entry_point
    );
    log::info!("entry '{}': command line: {}", entry.name, cmdline);
    if let Some(parked) = &s.parked {
        parked.table.boots.fetch_add(1, Ordering::AcqRel);
    }
    log_summary_so_far();
    // SAFETY: the kernel was validated and loaded into reserved RAM; parkboot's GDT has
    // __BOOT_CS (0x10) and __BOOT_DS (0x18) loaded, its identity map covers the kernel,
    // boot_params and the command line, interrupts are off.
    unsafe {
        core::arch::asm!(
            "cli",
            "jmp {entry}",
            entry = in(reg) entry_point,
            in("rsi") params,
            options(noreturn)
        )
    }
}

/// A kernel older than 6.11 takes the parked CPUs from the mailbox and never hands
/// them back: the kernel it kexecs (any version) then spins forever in
/// `acpi_wakeup_cpu`. parkboot boots it anyway (a single boot works) and says so.
fn warn_if_no_handback(entry: &Entry, kernel: &linux::Kernel) {
    match kernel.kernel_version.mailbox_handback() {
        linux::MailboxHandback::Yes(_) => {}
        linux::MailboxHandback::No(release) => log::warn!(
            "entry '{}': Linux {} is older than {} and does not hand the parked CPUs back: \
             its kexec successor will hang in acpi_wakeup_cpu (CPU offline/online too); \
             use 6.11+ for kexec loops, or park = off",
            entry.name,
            release,
            linux::MAILBOX_HANDBACK_RELEASE
        ),
        linux::MailboxHandback::Unknown => log::warn!(
            "entry '{}': no Linux release in the kernel's version string: if it is older than {}, its kexec successor will hang in acpi_wakeup_cpu",
            entry.name,
            linux::MAILBOX_HANDBACK_RELEASE
        ),
    }
}

struct InitrdText(Option<(u64, u64)>);

impl core::fmt::Display for InitrdText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some((addr, len)) => write!(f, "{len} bytes at {addr:#x}"),
            None => write!(f, "none"),
        }
    }
}
