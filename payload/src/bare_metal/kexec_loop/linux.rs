//! Booting a Linux bzImage through the 64-bit boot protocol. Linux drives its own kexec
//! loop from there: parkboot boots it once per iteration of its entry schedule and
//! tells it, on the command line, where the park table is and how many kexec
//! iterations the entry asks for.

use super::state::{log_summary_so_far, BootState, EntryError, Image};
use core::convert::Infallible;
use core::fmt::Write;
use core::sync::atomic::Ordering;
use parkboot::config::Entry;
use parkboot::kernels::linux::{self, BootArgs};
use parkboot::memory::{
    AllocationRequest, Lifetime, ReportAs, FOUR_GIB, ONE_MIB, PAGE_SIZE as PAGE,
};

const BOOT_PARAMS_BYTES: usize = 4096;
const E820_MAX: usize = 128;
/// Longest command line parkboot builds (the kernel's own limit is checked too).
const CMDLINE_BYTES: usize = 4096;

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
    let load = linux::place_kernel(&kernel, &s.memory)?;
    let pm = &bytes[kernel.protected_mode.clone()];
    let need = kernel.init_size.max(pm.len() as u64);
    s.memory
        .reserve(load, need, "Linux kernel", ReportAs::Usable, Lifetime::Boot)?;
    // SAFETY: reserved just above.
    unsafe { core::ptr::copy_nonoverlapping(pm.as_ptr(), load as *mut u8, pm.len()) };

    let initrd_range = match initrd {
        Some(initrd) => {
            let addr = linux::place_initrd(&kernel, initrd.len as u64, &s.memory)?;
            s.memory.reserve(
                addr,
                initrd.len as u64,
                "Linux initrd",
                ReportAs::Usable,
                Lifetime::Boot,
            )?;
            // SAFETY: reserved just above.
            unsafe {
                core::ptr::copy_nonoverlapping(initrd.bytes().as_ptr(), addr as *mut u8, initrd.len)
            };
            Some((addr, initrd.len as u64))
        }
        None => None,
    };

    // The command line: the entry's, plus what parkboot's Linux tooling reads.
    let mut cmdline: heapless::String<CMDLINE_BYTES> = heapless::String::new();
    let _ = cmdline.push_str(entry.cmdline.as_str());
    if let Some(parked) = &s.parked {
        let _ = write!(cmdline, " parkboot.park_table={:#x}", parked.layout.table);
    }
    let _ = write!(
        cmdline,
        " parkboot.iteration=1 parkboot.loops={}",
        iterations
    );
    // Without a usable MADT parkboot knows no CPU count: say nothing rather than 0.
    if s.cpus > 0 {
        let _ = write!(cmdline, " parkboot.cpus={}", s.cpus);
    }
    let cmdline_addr = s.memory.allocate(AllocationRequest {
        size: PAGE,
        align: PAGE,
        min: ONE_MIB,
        max: FOUR_GIB,
        name: "Linux command line",
        report_as: ReportAs::Usable,
        lifetime: Lifetime::Boot,
    })?;
    // SAFETY: just reserved (one page, the line is shorter).
    unsafe {
        core::ptr::copy_nonoverlapping(cmdline.as_ptr(), cmdline_addr as *mut u8, cmdline.len());
        *((cmdline_addr + cmdline.len() as u64) as *mut u8) = 0;
    }

    let params = s.memory.allocate(AllocationRequest {
        size: PAGE,
        align: PAGE,
        min: ONE_MIB,
        max: FOUR_GIB,
        name: "Linux boot_params",
        report_as: ReportAs::Usable,
        lifetime: Lifetime::Boot,
    })?;
    let mut e820 = [(0u64, 0u64, 0u32); E820_MAX];
    let count = linux::e820_from_kernel_view(s.memory.kernel_view(), &mut e820)?;
    // SAFETY: just reserved, one page.
    let out = unsafe { &mut *(params as *mut [u8; BOOT_PARAMS_BYTES]) };
    linux::build_boot_params(
        &kernel,
        bytes,
        out,
        &BootArgs {
            cmdline_addr,
            cmdline_len: cmdline.len(),
            initrd: initrd_range,
            rsdp: s.kernel_rsdp,
            e820: &e820[..count],
        },
    )?;
    let entry_point = load + linux::LINUX_64BIT_ENTRY_OFFSET;
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
