//! Boot entries and the kexec loop parkboot drives: load each configured kernel from a
//! pristine copy, boot it, take the boot processor back through the re-entry vector,
//! and boot again, without ever sending an AP INIT again.
//!
//! `state.rs` holds what survives the kernels; `linux.rs` boots a Linux bzImage;
//! `reentry.rs` is the vector kernels come back through. Multiboot2 kernels are booted
//! here.

mod linux;
mod reentry;
mod state;

pub use state::{summary, BootState, PER_AP_JSON_BYTES};

use crate::arch::finish::{done, stop};
use crate::arch::identity::{IdentityRegions, IDENTITY};
use crate::arch::{self, cpu, exceptions};
use core::fmt::Write;
use core::sync::atomic::Ordering;
use park::reentry::{
    KernelReport, Multiboot2ParkbootTag, ReentryRequest, MULTIBOOT2_TAG_TYPE_PARKBOOT,
};
use park::table::{CpuState, MAX_PARKED_CPUS, PARK_TABLE_VERSION};
use parkboot::config::{Entry, Format, Sha256Pin, Source, MAX_SOURCE_NAME};
use parkboot::flow::boot_loop::{
    IterationRecord, LoadPhases, Next, ReportRow, Request, Schedule, REPORT_HEADER,
};
use parkboot::kernels::gzip;
use parkboot::kernels::multiboot2::{self, prepare};
use parkboot::memory::{AllocationRequest, Lifetime, ReportAs, ONE_MIB, PAGE_SIZE as PAGE};
use parkboot::parking::layout::{Duration, Spread};
use parkboot::platform::cbfs::CompressionNote;
use parkboot::platform::sources;
use parkboot::platform::PhysicalMemory;
use state::{
    init_state, loop_log, scratch, stamp, stamp_current, state, Current, EntryError, Image,
    PinnedImage, STAMP_ACPI, STAMP_BOOT_INFO, STAMP_COPIED, STAMP_JUMP,
};

const LOADER_NAME: &str = concat!("parkboot ", env!("CARGO_PKG_VERSION"));
/// How long parkboot waits, after a kernel re-entered, for APs still on their way back
/// through the ResetVector.
const RETURN_TIMEOUT_NS: u64 = 1_000_000_000;
/// INT 15h's real-mode vector (segment << 16 | offset) when a legacy BIOS ran before
/// parkboot (PVH under SeaBIOS), else 0.
pub static LEGACY_BIOS_INT15: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// CBFS files considered for the default entry (a 16 MiB flash holds a few dozen).
const MAX_CBFS_NAMES: usize = 128;
/// Loop report rows printed in full; longer loops show the first and last half.
const REPORT_ROWS: usize = 20;

/// Runs the configured entries; never returns (kernels come back through `reentry`).
pub fn start(boot_state: BootState) -> ! {
    // SAFETY: `start` runs once, before any reference to the state exists; `s` is its
    // first and is not used after `run`, which takes its own.
    let s = unsafe {
        init_state(boot_state);
        state()
    };
    reentry::set_reentry_cr3(s.firmware_cr3, s.firmware_cr3_la57);
    if s.config.entries.is_empty() {
        default_entries(s);
    }
    let iterations: heapless::Vec<u32, 8> = s.config.entries.iter().map(|e| e.iterations).collect();
    s.schedule = Schedule::new(&iterations);
    // SAFETY: the loop log's first user; nothing else refers to it.
    unsafe { loop_log() }.iterations_requested = iterations.iter().map(|&n| n as u64).sum();
    if s.config.entries.is_empty() {
        log::info!("no boot entries: none configured, and neither CBFS nor fw_cfg offers a kernel");
    }
    let next = s.schedule.first();
    run(next)
}

fn run(mut next: Next) -> ! {
    loop {
        match next {
            Next::Finish => finish(),
            Next::Boot {
                entry,
                iteration,
                iterations,
            } => {
                let error = boot(entry, iteration, iterations);
                // SAFETY: `boot` returned, so the reference `try_boot` took is dead;
                // this one is not used after this step.
                let s = unsafe { state() };
                let config_entry = s.config.entries.get(entry);
                let name = config_entry.map(|e| e.name.as_str()).unwrap_or("?");
                log::error!(
                    "entry '{}' (iteration {}/{}): {}; going on with the next entry",
                    name,
                    iteration,
                    iterations,
                    error.in_entry(config_entry)
                );
                // SAFETY: no other reference to the loop log is in use in this step.
                unsafe { loop_log() }.push(IterationRecord {
                    entry: entry as u8,
                    iteration,
                    parkboot_memory_bytes: s.memory.parkboot_bytes(),
                    passed: false,
                    ..Default::default()
                });
                next = s.schedule.entry_failed();
            }
        }
    }
}

/// fw_cfg files parkboot boots when the configuration names no entry.
const FW_CFG_KERNEL: &str = "opt/parkboot/kernel";
const FW_CFG_INITRD: &str = "opt/parkboot/initrd";
const FW_CFG_CMDLINE: &str = "opt/parkboot/cmdline";

fn fw_cfg_has(s: &mut BootState, name: &str) -> bool {
    s.fw_cfg
        .as_mut()
        .is_some_and(|fw| matches!(fw.find(name), Ok(Some(_))))
}

/// Without configured entries, parkboot boots the kernel CBFS holds (the rule is in
/// `parkboot::platform::sources`), else what QEMU offers: `opt/parkboot/kernel` (with
/// `opt/parkboot/initrd`), else the standard `-kernel`/`-initrd` items, which QEMU fills
/// when parkboot is coreboot's payload and a bzImage is given with -kernel.
fn default_entries(s: &mut BootState) {
    if let Some(entry) = default_cbfs_entry(s) {
        log::info!(
            "no entries configured: booting {}{} once",
            entry.kernel,
            if entry.initrd.is_some() {
                " with its initrd"
            } else {
                ""
            }
        );
        let _ = s.config.entries.push(entry);
        return;
    }
    let (name, kernel, initrd) = if fw_cfg_has(s, FW_CFG_KERNEL) {
        let initrd = fw_cfg_has(s, FW_CFG_INITRD)
            .then(|| Source::FwCfg(FW_CFG_INITRD.try_into().unwrap_or_default()));
        (
            "fw_cfg",
            Source::FwCfg(FW_CFG_KERNEL.try_into().unwrap_or_default()),
            initrd,
        )
    } else if s
        .fw_cfg
        .as_mut()
        // A PVH or multiboot -kernel (parkboot itself, under PVH) is not for booting.
        .is_some_and(|fw| fw.kernel_is_bzimage())
    {
        let initrd = s
            .fw_cfg
            .as_mut()
            .is_some_and(|fw| fw.initrd_size().is_ok_and(|n| n > 0))
            .then_some(Source::QemuInitrd);
        ("qemu-kernel", Source::QemuKernel, initrd)
    } else {
        return;
    };
    log::info!("no entries configured: booting fw_cfg's {} once", kernel);
    let _ = s.config.entries.push(Entry {
        name: name.try_into().unwrap_or_default(),
        kernel,
        initrd,
        cmdline: heapless::String::new(),
        format: Format::Auto,
        iterations: 1,
        kernel_sha256: None,
        initrd_sha256: None,
    });
}

/// The default entry from CBFS: its kernel, the `initrd` and `cmdline` files beside it.
fn default_cbfs_entry(s: &BootState) -> Option<Entry> {
    let cbfs = s.cbfs.as_ref()?;
    let mut names: heapless::Vec<&str, MAX_CBFS_NAMES> = heapless::Vec::new();
    for file in cbfs.files().map_while(Result::ok) {
        let _ = names.push(file.name);
    }
    let kernel = sources::default_kernel(names.iter().copied())?;
    let initrd: heapless::String<MAX_SOURCE_NAME> =
        sources::sibling(kernel, sources::INITRD_FILE_NAME);
    let cmdline_name: heapless::String<MAX_SOURCE_NAME> =
        sources::sibling(kernel, sources::CMDLINE_FILE_NAME);
    let mut cmdline = heapless::String::new();
    if let Ok(Some(file)) = cbfs.find(&cmdline_name) {
        let mut buf = [0u8; parkboot::platform::MAX_CMDLINE];
        match file.read_into(&mut buf) {
            Ok(n) => match core::str::from_utf8(buf.get(..n).unwrap_or_default()) {
                Ok(text) => {
                    let _ = cmdline.push_str(text.trim_end_matches(['\0', '\n']));
                }
                Err(_) => log::warn!("cbfs:{cmdline_name} is not UTF-8 text: ignored"),
            },
            Err(e) => log::warn!("cbfs:{cmdline_name}: {e}: ignored"),
        }
    }
    Some(Entry {
        name: "cbfs".try_into().unwrap_or_default(),
        kernel: Source::Cbfs(kernel.try_into().ok()?),
        initrd: names
            .contains(&initrd.as_str())
            .then(|| Source::Cbfs(initrd.clone())),
        cmdline,
        format: Format::Auto,
        iterations: 1,
        kernel_sha256: None,
        initrd_sha256: None,
    })
}

/// An entry without a command line of its own takes fw_cfg's `opt/parkboot/cmdline`,
/// or QEMU's `-append` when its kernel is QEMU's `-kernel`.
fn fill_cmdline(s: &mut BootState, entry: &mut Entry) {
    if !entry.cmdline.is_empty() {
        return;
    }
    let mut buf = [0u8; parkboot::platform::MAX_CMDLINE];
    let Some(fw) = s.fw_cfg.as_mut() else { return };
    let text = match fw.find(FW_CFG_CMDLINE) {
        Ok(Some(file)) => fw
            .read_entry(&file, &mut buf)
            .ok()
            .and_then(|n| core::str::from_utf8(buf.get(..n)?).ok())
            .map(|t| t.trim_end_matches(['\0', '\n'])),
        _ if entry.kernel == Source::QemuKernel => fw.read_cmdline(&mut buf).ok(),
        _ => None,
    };
    if let Some(text) = text {
        let _ = entry.cmdline.push_str(text);
    }
}

/// Reserves `size` bytes (Permanent) for a pristine copy called `name`; returns the
/// address.
fn reserve_pristine(s: &mut BootState, size: u64, name: &'static str) -> Result<u64, EntryError> {
    let addr = s.memory.allocate(AllocationRequest {
        size: size.max(1),
        align: PAGE,
        min: ONE_MIB,
        max: u64::MAX,
        name,
        report_as: ReportAs::Reserved,
        lifetime: Lifetime::Permanent,
    })?;
    Ok(addr)
}

/// The bytes of a pristine copy parkboot has just reserved (`reserve_pristine`), for
/// filling it.
fn pristine_bytes(s: &BootState, addr: u64, len: u64) -> Result<&'static mut [u8], EntryError> {
    let region = s.memory.region(addr, len)?;
    // SAFETY: a Permanent reservation made just now for this copy: RAM the identity map
    // covers, filled through this slice alone, then only read (`Image::bytes`) for as
    // long as parkboot runs; a copy refused by its pin is released after its last read.
    Ok(unsafe { region.bytes_mut() })
}

fn load_source(
    s: &mut BootState,
    source: &Source,
    name: &'static str,
) -> Result<Image, EntryError> {
    match source {
        Source::FwCfg(file) => {
            let fw_cfg = s.fw_cfg.as_mut().ok_or(EntryError::NoFwCfg)?;
            let entry = fw_cfg.find(file)?.ok_or_else(|| {
                EntryError::NotFound(file.as_str().try_into().unwrap_or_default())
            })?;
            let addr = reserve_pristine(s, entry.size as u64, name)?;
            let buf = pristine_bytes(s, addr, entry.size as u64)?;
            let fw_cfg = s.fw_cfg.as_mut().ok_or(EntryError::NoFwCfg)?;
            let len = fw_cfg.read_entry(&entry, buf)?;
            Ok(Image { addr, len })
        }
        Source::QemuKernel => {
            let fw_cfg = s.fw_cfg.as_mut().ok_or(EntryError::NoFwCfg)?;
            let size = fw_cfg.kernel_image_size()?;
            let addr = reserve_pristine(s, size, name)?;
            let buf = pristine_bytes(s, addr, size)?;
            let fw_cfg = s.fw_cfg.as_mut().ok_or(EntryError::NoFwCfg)?;
            let len = fw_cfg.read_kernel_image(buf)?;
            Ok(Image { addr, len })
        }
        Source::QemuInitrd => {
            let fw_cfg = s.fw_cfg.as_mut().ok_or(EntryError::NoFwCfg)?;
            let size = fw_cfg.initrd_size()? as u64;
            let addr = reserve_pristine(s, size, name)?;
            let buf = pristine_bytes(s, addr, size)?;
            let fw_cfg = s.fw_cfg.as_mut().ok_or(EntryError::NoFwCfg)?;
            let len = fw_cfg.read_initrd(buf)?;
            Ok(Image { addr, len })
        }
        Source::Cbfs(file) => {
            let cbfs = s.cbfs.as_ref().ok_or(EntryError::NoCbfs)?;
            let found = cbfs.find(file)?.ok_or_else(|| {
                EntryError::NotInCbfs(file.as_str().try_into().unwrap_or_default())
            })?;
            let size = found.size()?;
            let start = cpu::rdtsc();
            let addr = reserve_pristine(s, size, name)?;
            let buf = pristine_bytes(s, addr, size)?;
            let len = found.read_into(buf)?;
            log::info!(
                "cbfs:{}: {} bytes read from flash ({} stored{}) in {}",
                file,
                len,
                found.data.len(),
                CompressionNote(found.compression),
                Duration(cpu::ticks_to_ns(cpu::rdtsc() - start))
            );
            Ok(Image { addr, len })
        }
        Source::Module(n) => {
            let module = s
                .platform
                .modules
                .get(*n as usize)
                .ok_or(EntryError::ModuleMissing(*n))?;
            Ok(Image {
                addr: module.start,
                len: module.size as usize,
            })
        }
    }
}

/// Names of the pristine copies' reservations.
const KERNEL_COPY: &str = "kernel image (pristine copy)";
const INITRD_COPY: &str = "initrd (pristine copy)";

/// Checks a freshly loaded image against the entry's pin for it, if any: once per
/// entry, on the bytes as read from the source (a gzip kernel before inflating), so
/// the digest is the one `sha256sum` prints for the file. A mismatch frees the copy
/// (a boot module stays where the VMM put it) and refuses the entry.
fn check_pin(
    s: &mut BootState,
    entry: &Entry,
    which: PinnedImage,
    image: Image,
    copy_name: &'static str,
) -> Result<(), EntryError> {
    let (Some(source), Some(pinned)) = which.of(entry) else {
        return Ok(());
    };
    let what = which.name();
    let start = cpu::rdtsc();
    let found = Sha256Pin::of(image.bytes());
    let took = Duration(cpu::ticks_to_ns(cpu::rdtsc() - start));
    if found == pinned {
        log::info!(
            "entry '{}': {} {}: SHA-256 {} as pinned ({} bytes hashed in {})",
            entry.name,
            what,
            source,
            found,
            image.len,
            took
        );
        return Ok(());
    }
    log::info!(
        "entry '{}': {} {}: {} bytes hashed in {}",
        entry.name,
        what,
        source,
        image.len,
        took
    );
    if !matches!(source, Source::Module(_)) {
        s.memory.release(image.addr, copy_name);
    }
    Err(EntryError::PinMismatch {
        image: which,
        found,
    })
}

/// The entry's kernel as a pristine (and, if it was gzip-compressed, inflated) copy,
/// loaded from its source the first time only.
fn kernel_image(s: &mut BootState, index: usize, entry: &Entry) -> Result<Image, EntryError> {
    if let Some(image) = s.images.get(index).copied().flatten() {
        return Ok(image);
    }
    let mut image = load_source(s, &entry.kernel, KERNEL_COPY)?;
    check_pin(s, entry, PinnedImage::Kernel, image, KERNEL_COPY)?;
    if gzip::is_gzip(image.bytes()) {
        // Sized by a first pass over the stream, never by the trailer alone.
        let size = gzip::inflated_size(image.bytes())? as u64;
        let addr = s.memory.allocate(AllocationRequest {
            size: size.max(1),
            align: PAGE,
            min: ONE_MIB,
            max: u64::MAX,
            name: "kernel image (inflated)",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Permanent,
        })?;
        let out = pristine_bytes(s, addr, size)?;
        let len = gzip::inflate(image.bytes(), out)?;
        log::info!(
            "entry '{}': inflated {} bytes of gzip to {}",
            entry.name,
            image.len,
            len
        );
        image = Image { addr, len };
    }
    log::info!(
        "entry '{}': kernel {} ({} bytes) kept at {:#x} as the pristine copy every iteration reloads",
        entry.name,
        entry.kernel,
        image.len,
        image.addr
    );
    // A cache: an index beyond it (none: the table has MAX_ENTRIES) loads again.
    if let Some(cached) = s.images.get_mut(index) {
        *cached = Some(image);
    }
    Ok(image)
}

fn initrd_image(
    s: &mut BootState,
    index: usize,
    entry: &Entry,
) -> Result<Option<Image>, EntryError> {
    let Some(source) = &entry.initrd else {
        return Ok(None);
    };
    if let Some(image) = s.initrds.get(index).copied().flatten() {
        return Ok(Some(image));
    }
    let image = load_source(s, source, INITRD_COPY)?;
    check_pin(s, entry, PinnedImage::Initrd, image, INITRD_COPY)?;
    if let Some(cached) = s.initrds.get_mut(index) {
        *cached = Some(image);
    }
    Ok(Some(image))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Multiboot2,
    Linux,
}

fn detect(entry: &Entry, image: &[u8]) -> Result<Kind, EntryError> {
    match entry.format {
        Format::Multiboot2 => Ok(Kind::Multiboot2),
        Format::Linux => Ok(Kind::Linux),
        Format::Auto => {
            if multiboot2::find_header(image).is_some() {
                Ok(Kind::Multiboot2)
            } else if parkboot::kernels::linux::looks_like_bzimage(image) {
                Ok(Kind::Linux)
            } else {
                Err(EntryError::NotAKernel)
            }
        }
    }
}

/// Loads and boots one iteration of an entry. Returns only when it could not.
fn boot(index: usize, iteration: u32, iterations: u32) -> EntryError {
    match try_boot(index, iteration, iterations) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_boot(
    index: usize,
    iteration: u32,
    iterations: u32,
) -> Result<core::convert::Infallible, EntryError> {
    // SAFETY: `run`, the only caller (through `boot`), holds no reference to the state
    // across it.
    let s = unsafe { state() };
    let start_tsc = cpu::rdtsc();
    release_boot_memory(s);
    let mut entry = s
        .config
        .entries
        .get(index)
        .cloned()
        .ok_or(EntryError::NoEntry(index))?;
    fill_cmdline(s, &mut entry);
    let image = kernel_image(s, index, &entry)?;
    let initrd = initrd_image(s, index, &entry)?;
    let kind = detect(&entry, image.bytes())?;
    let mut aps_parked = 0;
    if let (Some(tables), Some(parked)) = (s.kernel_tables.as_mut(), &s.parked) {
        let emitted = tables.emit(parked).map_err(EntryError::KernelTables)?;
        s.kernel_rsdp = emitted.rsdp;
        s.cpus = emitted.cpus_advertised;
        aps_parked = parked.table.parked_count();
    }
    let mut wake_counts = [0u64; MAX_PARKED_CPUS];
    if let Some(parked) = &s.parked {
        parked.table.clear_wake_all_vector();
        for (count, slot) in wake_counts.iter_mut().zip(parked.table.cpus()) {
            *count = slot.wake_count.load(Ordering::Acquire);
        }
    }
    s.current = Some(Current {
        entry: index,
        iteration,
        iterations,
        start_tsc,
        stamps: [start_tsc, 0, 0, 0, 0],
        wake_counts,
        aps_parked,
        before: s.parked.as_ref().map(crate::misbehaviour::BeforeBoot::of),
    });
    match kind {
        Kind::Multiboot2 => boot_multiboot2(s, &entry, image, initrd, iteration, iterations),
        Kind::Linux => linux::boot_linux(s, &entry, image, initrd, iterations),
    }
}

/// Frees the previous kernel's load areas for the next one, unless a CPU that kernel
/// woke has not come back through the ResetVector: it may still be running in them, so
/// they stay reserved for good (and the CPU stays out of the kernels' MADT).
fn release_boot_memory(s: &mut BootState) {
    let not_back = s.parked.as_ref().map_or(0, |parked| {
        parked
            .table
            .cpus()
            .iter()
            .filter(|slot| slot.state() == Some(CpuState::Running))
            .count()
    });
    if not_back > 0 {
        let kept = s.memory.keep_boot_reservations();
        if kept > 0 {
            log::warn!(
                "{} CPUs have not come back through the ResetVector: the previous kernel's {} load areas stay reserved for good, so nothing is loaded over code they may still run",
                not_back,
                kept
            );
        }
    }
    s.memory.release_boot();
}

fn boot_multiboot2(
    s: &mut BootState,
    entry: &Entry,
    image: Image,
    initrd: Option<Image>,
    iteration: u32,
    iterations: u32,
) -> Result<core::convert::Infallible, EntryError> {
    let bytes = image.bytes();
    let plan = multiboot2::plan(bytes)?;
    let bios = LEGACY_BIOS_INT15.load(Ordering::Relaxed);
    if bios != 0 && s.parked.is_some() && iteration == 1 {
        log::warn!(
            "entry '{}': a legacy BIOS is underneath (INT 15h at {:04x}:{:04x}): a multiboot2 kernel that asks it for the memory map (INT 15h E820; Xen does unless given no-real-mode) does not see the park region and may overwrite the parked CPUs' memory; parkboot's multiboot2 map is right",
            entry.name,
            bios >> 16,
            bios & 0xffff
        );
    }
    let parkboot_tag = s.parked.as_ref().map(|parked| Multiboot2ParkbootTag {
        tag_type: MULTIBOOT2_TAG_TYPE_PARKBOOT,
        size: core::mem::size_of::<Multiboot2ParkbootTag>() as u32,
        park_table: parked.layout.table,
        park_table_version: PARK_TABLE_VERSION,
        iteration,
        iterations,
        reserved: 0,
    });
    let rsdp = IDENTITY
        .bytes(s.kernel_rsdp, prepare::RSDP_V2_BYTES)
        .unwrap_or_default();
    let handoff = prepare::Handoff {
        cmdline: entry.cmdline.as_str(),
        loader_name: LOADER_NAME,
        module: initrd.map(|initrd| initrd.bytes()),
        parkboot: parkboot_tag,
        rsdp,
    };
    let (parked, current) = (&s.parked, &mut s.current);
    let prepared = prepare::prepare(
        &mut s.memory,
        &mut IdentityRegions,
        bytes,
        &plan,
        &handoff,
        &mut |phase| {
            let stamp_index = match phase {
                prepare::Phase::Copied => STAMP_COPIED,
                prepare::Phase::BootInfo => {
                    if let Some(parked) = parked {
                        parked.table.boots.fetch_add(1, Ordering::AcqRel);
                    }
                    STAMP_BOOT_INFO
                }
                prepare::Phase::Acpi => STAMP_ACPI,
            };
            stamp_current(current, stamp_index);
        },
    )
    .map_err(|e| match e {
        prepare::PrepareError::BootInfo(e) => EntryError::BootInfo(e),
        prepare::PrepareError::Memory(e) => EntryError::Memory(e),
        prepare::PrepareError::Image(e) => EntryError::Multiboot2(e),
    })?;
    let mbi = prepared.boot_info;
    if iteration == 1 || s.config.entries.len() > 1 {
        log::info!(
            "entry '{}': multiboot2 kernel, entry {:#x}, {} segments, boot information at {:#x}",
            entry.name,
            plan.entry,
            plan.segments.len(),
            mbi
        );
    }
    stamp(s, STAMP_JUMP);
    // SAFETY: the plan was validated, its segments loaded into reserved RAM below
    // 4 GiB; the boot stack is free once parkboot hands off.
    unsafe {
        parkboot::kernels::handoff::enter_protected_mode32(
            plan.entry,
            multiboot2::BOOTLOADER_MAGIC,
            mbi as u32,
            arch::boot_stack_top() as u32,
        )
    }
}

/// Where a park-aware kernel gives the boot processor back (see `reentry.S`).
pub extern "C" fn reentry(request: u64, report_addr: u64) -> ! {
    exceptions::init();
    let back_tsc = cpu::rdtsc();
    // SAFETY: entered from the re-entry vector on a fresh boot stack: every frame that
    // held a reference to the state was abandoned when the kernel was booted. `s` is not
    // used after `run`, which takes its own.
    let s = unsafe { state() };
    // The report is copied first, before anything is written into memory the kernel
    // owned, and only from RAM: an address in a hole, MMIO or beyond RAM is refused
    // by name instead of faulting (or reading a device register).
    let report_size = core::mem::size_of::<KernelReport>() as u64;
    let report = if report_addr == 0 {
        None
    } else if let Ok(region) = s.memory.ram_region(report_addr, report_size) {
        // SAFETY: the whole report lies in RAM, which parkboot's identity map covers;
        // the kernel that wrote it is gone and the parked CPUs do not touch it.
        let bytes = unsafe { region.bytes_mut() };
        // SAFETY: `bytes` holds exactly one `KernelReport`, plain integers for which
        // every bit pattern is valid; read unaligned.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<KernelReport>()) })
    } else {
        log::warn!(
            "the kernel's report at {:#x} ({} bytes) is not in RAM: ignored, nothing read there",
            report_addr,
            report_size
        );
        None
    };
    let Some(current) = s.current.take() else {
        stop(format_args!(
            "a kernel re-entered parkboot, but no kernel was running"
        ));
    };
    let name = s
        .config
        .entries
        .get(current.entry)
        .map(|e| e.name.clone())
        .unwrap_or_default();
    let mut passed = true;
    let mut cpus_woken = 0;
    let mut aps_parked = 0;
    if let Some(parked) = &s.parked {
        let table = parked.table;
        let deadline = back_tsc + cpu::ns_to_ticks(RETURN_TIMEOUT_NS);
        cpu::wait_until(deadline, || table.parked_count() >= current.aps_parked);
        aps_parked = table.parked_count();
        if let Some(before) = &current.before {
            let findings = crate::misbehaviour::inspect(
                parked,
                before,
                format_args!("entry '{}' iteration {}", name, current.iteration),
            );
            let repairs = findings.table_damage + findings.states_corrected;
            if repairs > 0 {
                passed = false;
                s.table_repairs += repairs as u64;
            }
            aps_parked = table.parked_count();
        }
        // After the repair: a kernel that broke the header hides no slot from this.
        cpus_woken = table
            .cpus()
            .iter()
            .zip(current.wake_counts.iter())
            .filter(|(slot, before)| slot.wake_count.load(Ordering::Acquire) > **before)
            .count() as u32;
        if aps_parked < current.aps_parked {
            passed = false;
            log::error!(
                "entry '{}' iteration {}: only {} of {} APs are parked again",
                name,
                current.iteration,
                aps_parked,
                current.aps_parked
            );
        }
    }
    let (mut wake_min, mut wake_median, mut wake_max, mut wake_all) = (0, 0, 0, 0);
    let cpu_count = s.parked.as_ref().map_or(0, |p| p.owned_slots.len() as u32);
    if let Some(r) = report {
        match r.check(cpu_count) {
            Ok(()) => {
                wake_min = r.wake_ns_min;
                wake_median = r.wake_ns_median;
                wake_max = r.wake_ns_max;
                wake_all = r.wake_all_ns;
            }
            Err(problem) => log::warn!(
                "entry '{}' iteration {}: the kernel's report at {:#x}: {}: {}",
                name,
                current.iteration,
                report_addr,
                problem,
                if r.is_valid() {
                    "its measurements are ignored"
                } else {
                    "ignored"
                }
            ),
        }
        if r.is_valid() && r.status != 0 {
            passed = false;
            match r.checked_message() {
                Ok(message) => log::error!(
                    "entry '{}' iteration {}: the kernel reports failure {}: {}",
                    name,
                    current.iteration,
                    r.status,
                    message
                ),
                Err(problem) => log::error!(
                    "entry '{}' iteration {}: the kernel reports failure {}, and its {}",
                    name,
                    current.iteration,
                    r.status,
                    problem
                ),
            }
        }
    }
    // An unknown request is the kernel's failure, recorded as such.
    let request_value = request;
    let request = ReentryRequest::from_raw(request_value);
    if request.is_none() {
        passed = false;
        log::error!(
            "entry '{}' iteration {}: unknown re-entry request {}; going on with the next entry",
            name,
            current.iteration,
            request_value
        );
    }
    let cycle_ns = cpu::ticks_to_ns(back_tsc - current.start_tsc);
    let mut phases = LoadPhases::from_stamps(current.stamps, 0, cpu::ticks_to_ns);
    let load_ns = phases.total_ns();
    // Each log line costs the serial port's time (and a CBMEM copy): in a long loop
    // only the first, the last and failed iterations get one; the loop report has
    // every iteration.
    let quiet = passed && current.iteration != 1 && current.iteration != current.iterations;
    log::log!(
        if quiet { log::Level::Debug } else { log::Level::Info },
        "entry '{}' iteration {}/{}: back after {} (parkboot's load {}), {} APs woken, {} parked again{}",
        name,
        current.iteration,
        current.iterations,
        Duration(cycle_ns),
        Duration(load_ns),
        cpus_woken,
        aps_parked,
        if passed { "" } else { ": FAILED" }
    );
    phases.reentry_ns = cpu::ticks_to_ns(cpu::rdtsc() - back_tsc);
    // SAFETY: no other reference to the loop log is in use in this step.
    unsafe { loop_log() }.push(IterationRecord {
        entry: current.entry as u8,
        iteration: current.iteration,
        cycle_ns,
        load_ns,
        phases,
        cpus_woken,
        wake_ns_median: wake_median,
        wake_ns_min: wake_min,
        wake_ns_max: wake_max,
        parkboot_memory_bytes: s.memory.parkboot_bytes(),
        wake_all_ns: wake_all,
        passed,
        ran: true,
    });
    let next = match request {
        _ if !passed => s.schedule.entry_failed(),
        Some(ReentryRequest::SameEntry) => s.schedule.after(Request::SameEntry),
        Some(ReentryRequest::NextEntry) => s.schedule.after(Request::NextEntry),
        Some(ReentryRequest::Stop) => s.schedule.after(Request::Stop),
        None => s.schedule.entry_failed(),
    };
    run(next)
}

fn finish() -> ! {
    // SAFETY: `run`, the only caller, holds no reference to the state or the loop log
    // across it; `finish` never returns.
    let (s, log) = unsafe { (state(), loop_log()) };
    if log.iterations_requested > 0 {
        log::info!(
            "loop report: {} of {} iterations done, {} failed",
            log.iterations_done,
            log.iterations_requested,
            log.iterations_failed
        );
        log::info!("  {}", REPORT_HEADER);
        let rows = log.records.len();
        for (i, r) in log.records.iter().enumerate() {
            if rows > REPORT_ROWS && i == REPORT_ROWS / 2 {
                log::info!("  ... ({} more)", rows - REPORT_ROWS);
            }
            if rows > REPORT_ROWS && i >= REPORT_ROWS / 2 && i < rows - REPORT_ROWS / 2 {
                continue;
            }
            let name = s
                .config
                .entries
                .get(r.entry as usize)
                .map(|e| e.name.as_str())
                .unwrap_or("?");
            log::info!("  {}", ReportRow { name, record: r });
        }
    }
    // SAFETY: `finish` is the scratch array's only user.
    let scratch = unsafe { scratch() };
    let passed = || log.records.iter().filter(|r| r.passed);
    let cycle = Spread::of_values(passed().map(|r| r.cycle_ns), scratch);
    let wake = Spread::of_values(
        passed()
            .filter(|r| r.wake_ns_median > 0)
            .map(|r| r.wake_ns_median),
        scratch,
    );
    let wake_all = Spread::of_values(
        passed()
            .filter(|r| r.wake_all_ns > 0)
            .map(|r| r.wake_all_ns),
        scratch,
    );
    let woken_min = passed().map(|r| r.cpus_woken).min().unwrap_or(0);
    // parkboot's own work per iteration, whole and phase by phase.
    let phase_of = LoadPhases::NAMED;
    let mut phase_spreads: [Option<Spread>; 6] = [None; 6];
    for (spread, (_, of)) in phase_spreads.iter_mut().zip(phase_of.iter()) {
        *spread = Spread::of_values(passed().map(|r| of(&r.phases)), scratch);
    }
    if let Some(c) = cycle {
        log::info!("  per-iteration time min / median / max: {}", c);
    }
    for (spread, (name, _)) in phase_spreads.iter().zip(phase_of.iter()) {
        if let Some(p) = spread {
            log::info!("  parkboot's work, {:9} min / median / max: {}", name, p);
        }
    }
    if let Some(w) = wake {
        log::info!(
            "  AP wake latency (each iteration's median) min / median / max: {}",
            w
        );
    }
    if let Some((min, max)) = log.parkboot_memory_bytes {
        log::info!(
            "  parkboot's own memory (kept from kernels) min / max: {} / {} bytes{}",
            min,
            max,
            if min == max {
                ": the same in every iteration"
            } else {
                ": CHANGED between iterations"
            }
        );
    }
    if let Some(w) = wake_all {
        log::info!("  wake-all of every AP (kernel) min / median / max: {}", w);
    }
    // SAFETY: startup's reference is dead (it called `start`, which never returns), and
    // `log_summary_so_far` is not called from here on.
    let summary = unsafe { summary() };
    if let Some(parked) = &s.parked {
        let _ = write!(
            summary,
            r#","aps_not_back":{},"table_repairs":{}"#,
            crate::misbehaviour::running(parked.table),
            s.table_repairs
        );
    }
    if let Some((min, max)) = log.parkboot_memory_bytes {
        let _ = write!(
            summary,
            ",\"parkboot_memory_bytes\":{{\"min\":{min},\"max\":{max}}}"
        );
    }
    let _ = write!(
        summary,
        ",\"iterations_requested\":{},\"iterations_done\":{},\"iterations_failed\":{},\"cpus_woken_min\":{}",
        log.iterations_requested, log.iterations_done, log.iterations_failed, woken_min
    );
    if let Some(c) = cycle {
        let _ = write!(summary, ",\"iteration_ns\":{}", c.json());
    }
    if let Some(w) = wake {
        let _ = write!(summary, ",\"ap_wake_ns\":{}", w.json());
    }
    if let Some(w) = wake_all {
        let _ = write!(summary, ",\"wake_all_ns\":{}", w.json());
    }
    if phase_spreads.iter().all(Option::is_some) {
        let _ = summary.push_str(",\"parkboot_work_ns\":{");
        for (i, (spread, (name, _))) in phase_spreads.iter().zip(phase_of.iter()).enumerate() {
            if let Some(p) = spread {
                let comma = if i == 0 { "" } else { "," };
                let _ = write!(summary, "{comma}\"{name}\":{}", p.json());
            }
        }
        let _ = summary.push('}');
    }
    let _ = summary.push('}');
    log::info!("parkboot: summary: {}", summary);
    if log.iterations_failed > 0 {
        stop(format_args!(
            "{} of {} iterations failed",
            log.iterations_failed, log.iterations_done
        ));
    }
    done()
}
