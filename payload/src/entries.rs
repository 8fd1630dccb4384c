//! Boot entries and the kexec loop parkboot drives: load each configured kernel from a
//! pristine copy, boot it, take the boot processor back through the re-entry vector,
//! and boot again, without ever sending an AP INIT again.

use crate::arch::{self, cpu, exceptions};
use crate::parking::Parked;
use crate::{done, stop};
use core::fmt::{self, Write};
use core::mem::MaybeUninit;
use core::sync::atomic::Ordering;
use park::reentry::{
    KernelReport, Multiboot2ParkbootTag, ReentryRequest, MULTIBOOT2_TAG_TYPE_PARKBOOT,
};
use park::table::{CpuState, MAX_PARKED_CPUS, PARK_TABLE_VERSION};
use parkboot::boot_loop::{IterationRecord, LoadPhases, LoopLog, Next, Request, Schedule};
use parkboot::config::{Config, Entry, Format, Source};
use parkboot::fw_cfg::{FwCfg, FwCfgError, IoPorts};
use parkboot::memory::{
    Lifetime, MemoryError, MemoryMap, ReportAs, FOUR_GIB, ONE_MIB, PAGE_SIZE as PAGE,
};
use parkboot::multiboot2::{self, Mb2Error};
use parkboot::park_layout::{Duration, Spread};
use parkboot::platform::Platform;

/// Room for the multiboot2 boot information parkboot builds (memory map included).
const MBI_BYTES: u64 = 16 * 1024;
const RSDP_V2_BYTES: usize = 36;
const LOADER_NAME: &str = concat!("parkboot ", env!("CARGO_PKG_VERSION"));
/// How long parkboot waits, after a kernel re-entered, for APs still on their way back
/// through the ResetVector.
const RETURN_TIMEOUT_NS: u64 = 1_000_000_000;
/// Loop report rows printed in full; longer loops show the first and last half.
const REPORT_ROWS: usize = 20;
pub const SUMMARY_CAPACITY: usize = 2048 + 128 * MAX_PARKED_CPUS;

/// A kernel or initrd as loaded once from its source: the pristine copy every
/// iteration reloads from.
#[derive(Clone, Copy)]
pub struct Image {
    pub addr: u64,
    pub len: usize,
}

impl Image {
    pub fn bytes(&self) -> &'static [u8] {
        // SAFETY: a range parkboot reserved (Permanent) or a boot module it reserved.
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

const PHASE_STAMPS: usize = 5;
const STAMP_COPIED: usize = 1;
const STAMP_BOOT_INFO: usize = 2;
const STAMP_ACPI: usize = 3;
const STAMP_JUMP: usize = 4;

/// Records the end of a load phase of the iteration in flight.
fn stamp(s: &mut BootState, phase: usize) {
    if let Some(current) = s.current.as_mut() {
        current.stamps[phase] = cpu::rdtsc();
    }
}

/// The iteration in flight while a kernel runs.
struct Current {
    entry: usize,
    iteration: u32,
    iterations: u32,
    start_tsc: u64,
    /// TSC at the end of each load phase: `[start, copied, boot information, ACPI,
    /// jump]` (see `LoadPhases::from_stamps`); 0 = not reached.
    stamps: [u64; PHASE_STAMPS],
    wake_counts: [u64; MAX_PARKED_CPUS],
}

/// Everything parkboot keeps while kernels run (its stack does not survive them).
pub struct BootState {
    pub platform: Platform,
    pub config: Config,
    pub memory: MemoryMap,
    pub parked: Option<Parked>,
    /// The RSDP kernels get: the rewritten tables, or the platform's in baseline mode.
    pub kernel_rsdp: u64,
    pub fw_cfg: Option<FwCfg<IoPorts>>,
    pub cpus: u32,
    /// parkboot's page tables, loaded again at the re-entry vector.
    pub firmware_cr3: u64,
    pub firmware_cr3_la57: u64,
    images: [Option<Image>; 8],
    initrds: [Option<Image>; 8],
    schedule: Schedule,
    current: Option<Current>,
}

static mut STATE: MaybeUninit<BootState> = MaybeUninit::uninit();
/// Kept apart from `BootState` because they are large: they live in .bss only.
static mut LOOP_LOG: LoopLog = LoopLog::new();
static mut SUMMARY: heapless::String<SUMMARY_CAPACITY> = heapless::String::new();
static mut SCRATCH: [u64; parkboot::boot_loop::MAX_RECORDED_ITERATIONS] =
    [0; parkboot::boot_loop::MAX_RECORDED_ITERATIONS];

fn loop_log() -> &'static mut LoopLog {
    // SAFETY: only the boot processor runs parkboot's Rust code, one user at a time.
    unsafe { &mut *core::ptr::addr_of_mut!(LOOP_LOG) }
}

/// The summary JSON, built up from boot to the end, without its closing brace.
pub fn summary() -> &'static mut heapless::String<SUMMARY_CAPACITY> {
    // SAFETY: as for `loop_log`.
    unsafe { &mut *core::ptr::addr_of_mut!(SUMMARY) }
}

fn state() -> &'static mut BootState {
    // SAFETY: written once by `start` before anything calls this; only the boot
    // processor runs parkboot's Rust code.
    unsafe { (*core::ptr::addr_of_mut!(STATE)).assume_init_mut() }
}

impl BootState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        platform: Platform,
        config: Config,
        memory: MemoryMap,
        parked: Option<Parked>,
        kernel_rsdp: u64,
        fw_cfg: Option<FwCfg<IoPorts>>,
        cpus: u32,
        map: &crate::parking::FirmwareMap,
    ) -> Self {
        BootState {
            firmware_cr3: map.pml4,
            firmware_cr3_la57: map.pml5,
            platform,
            config,
            memory,
            parked,
            kernel_rsdp,
            fw_cfg,
            cpus,
            images: [None; 8],
            initrds: [None; 8],
            schedule: Schedule::new(&[]),
            current: None,
        }
    }
}

/// Why an entry could not be booted. parkboot logs it and goes on with the next entry.
pub enum EntryError {
    Memory(MemoryError),
    FwCfg(FwCfgError),
    Multiboot2(Mb2Error),
    Linux(parkboot::linux::LinuxError),
    NoFwCfg,
    NotFound(heapless::String<64>),
    Unsupported(&'static str),
    NotAKernel,
    ModuleMissing(u32),
    BootInfo(Mb2Error),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Memory(e) => write!(f, "{e}"),
            EntryError::FwCfg(e) => write!(f, "fw_cfg: {e}"),
            EntryError::Multiboot2(e) => write!(f, "{e}"),
            EntryError::Linux(e) => write!(f, "{e}"),
            EntryError::NoFwCfg => write!(f, "no QEMU fw_cfg device to load it from"),
            EntryError::NotFound(name) => write!(f, "fw_cfg has no file '{name}'"),
            EntryError::Unsupported(what) => write!(f, "{what}"),
            EntryError::NotAKernel => write!(
                f,
                "neither a multiboot2 kernel (no header in the first 32 KiB) nor a Linux bzImage (no 'HdrS' at 0x202)"
            ),
            EntryError::ModuleMissing(n) => write!(f, "there is no boot module {n}"),
            EntryError::BootInfo(e) => write!(f, "building the boot information: {e}"),
        }
    }
}

impl From<MemoryError> for EntryError {
    fn from(e: MemoryError) -> Self {
        EntryError::Memory(e)
    }
}

impl From<FwCfgError> for EntryError {
    fn from(e: FwCfgError) -> Self {
        EntryError::FwCfg(e)
    }
}

impl From<Mb2Error> for EntryError {
    fn from(e: Mb2Error) -> Self {
        EntryError::Multiboot2(e)
    }
}

impl From<parkboot::linux::LinuxError> for EntryError {
    fn from(e: parkboot::linux::LinuxError) -> Self {
        EntryError::Linux(e)
    }
}

/// Runs the configured entries; never returns (kernels come back through `reentry`).
pub fn start(boot_state: BootState) -> ! {
    // SAFETY: the one write, before any reader.
    unsafe { (*core::ptr::addr_of_mut!(STATE)).write(boot_state) };
    let s = state();
    arch::REENTRY_CR3.store(s.firmware_cr3, Ordering::Relaxed);
    arch::REENTRY_CR3_LA57.store(s.firmware_cr3_la57, Ordering::Relaxed);
    if s.config.entries.is_empty() {
        default_entries(s);
    }
    let iterations: heapless::Vec<u32, 8> = s.config.entries.iter().map(|e| e.iterations).collect();
    s.schedule = Schedule::new(&iterations);
    loop_log().iterations_requested = iterations.iter().map(|&n| n as u64).sum();
    if s.config.entries.is_empty() {
        log::info!("no boot entries: none configured, and fw_cfg offers no kernel");
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
                let s = state();
                let name = s
                    .config
                    .entries
                    .get(entry)
                    .map(|e| e.name.as_str())
                    .unwrap_or("?");
                log::error!(
                    "entry '{}' (iteration {}/{}): {}; going on with the next entry",
                    name,
                    iteration,
                    iterations,
                    error
                );
                loop_log().push(IterationRecord {
                    entry: entry as u8,
                    iteration,
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

/// Without configured entries, parkboot boots what QEMU offers: `opt/parkboot/kernel`
/// (with `opt/parkboot/initrd`), else the standard `-kernel`/`-initrd` items, which
/// QEMU fills when parkboot is coreboot's payload and a bzImage is given with -kernel.
fn default_entries(s: &mut BootState) {
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
    });
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
            .and_then(|n| core::str::from_utf8(&buf[..n]).ok())
            .map(|t| t.trim_end_matches(['\0', '\n'])),
        _ if entry.kernel == Source::QemuKernel => fw.read_cmdline(&mut buf).ok(),
        _ => None,
    };
    if let Some(text) = text {
        let _ = entry.cmdline.push_str(text);
    }
}

/// Reads one fw_cfg item into a buffer; returns the bytes read.
type FwCfgRead<'a> = dyn FnMut(&mut FwCfg<IoPorts>, &mut [u8]) -> Result<usize, FwCfgError> + 'a;

fn load_source(
    s: &mut BootState,
    source: &Source,
    name: &'static str,
) -> Result<Image, EntryError> {
    let read = |size: u64, s: &mut BootState, fill: &mut FwCfgRead| {
        let addr = s.memory.allocate(
            size.max(1),
            PAGE,
            ONE_MIB,
            u64::MAX,
            name,
            ReportAs::Reserved,
            Lifetime::Permanent,
        )?;
        // SAFETY: just reserved for this copy.
        let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, size as usize) };
        let fw_cfg = s.fw_cfg.as_mut().ok_or(EntryError::NoFwCfg)?;
        let len = fill(fw_cfg, buf)?;
        Ok::<Image, EntryError>(Image { addr, len })
    };
    match source {
        Source::FwCfg(file) => {
            let fw_cfg = s.fw_cfg.as_mut().ok_or(EntryError::NoFwCfg)?;
            let entry = fw_cfg.find(file)?.ok_or_else(|| {
                EntryError::NotFound(file.as_str().try_into().unwrap_or_default())
            })?;
            read(entry.size as u64, s, &mut |fw, buf| {
                fw.read_entry(&entry, buf)
            })
        }
        Source::QemuKernel => {
            let size = s
                .fw_cfg
                .as_mut()
                .ok_or(EntryError::NoFwCfg)?
                .kernel_image_size()?;
            read(size, s, &mut |fw, buf| fw.read_kernel_image(buf))
        }
        Source::QemuInitrd => {
            let size = s
                .fw_cfg
                .as_mut()
                .ok_or(EntryError::NoFwCfg)?
                .initrd_size()? as u64;
            read(size, s, &mut |fw, buf| fw.read_initrd(buf))
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
        Source::Cbfs(_) => Err(EntryError::Unsupported(
            "CBFS sources are not supported yet",
        )),
    }
}

/// The entry's kernel as a pristine (and, if it was gzip-compressed, inflated) copy,
/// loaded from its source the first time only.
fn kernel_image(s: &mut BootState, index: usize, entry: &Entry) -> Result<Image, EntryError> {
    if let Some(image) = s.images[index] {
        return Ok(image);
    }
    let mut image = load_source(s, &entry.kernel, "kernel image (pristine copy)")?;
    if multiboot2::is_gzip(image.bytes()) {
        let size = multiboot2::gzip_size(image.bytes()).unwrap_or(0) as u64;
        let addr = s.memory.allocate(
            size.max(1),
            PAGE,
            ONE_MIB,
            u64::MAX,
            "kernel image (inflated)",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )?;
        // SAFETY: just reserved.
        let out = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, size as usize) };
        let len = multiboot2::inflate_gzip(image.bytes(), out)?;
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
    s.images[index] = Some(image);
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
    if let Some(image) = s.initrds[index] {
        return Ok(Some(image));
    }
    let image = load_source(s, source, "initrd (pristine copy)")?;
    s.initrds[index] = Some(image);
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
            } else if parkboot::linux::looks_like_bzimage(image) {
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
    let s = state();
    let start_tsc = cpu::rdtsc();
    s.memory.release_boot();
    let mut entry = s.config.entries[index].clone();
    fill_cmdline(s, &mut entry);
    let image = kernel_image(s, index, &entry)?;
    let initrd = initrd_image(s, index, &entry)?;
    let kind = detect(&entry, image.bytes())?;
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
    });
    match kind {
        Kind::Multiboot2 => boot_multiboot2(s, &entry, image, initrd, iteration, iterations),
        Kind::Linux => crate::linux_boot::boot_linux(s, &entry, image, initrd, iterations),
    }
}

fn reserve_copy(
    s: &mut BootState,
    bytes: &[u8],
    max: u64,
    name: &'static str,
) -> Result<u64, EntryError> {
    let addr = s.memory.allocate(
        bytes.len().max(1) as u64,
        PAGE,
        ONE_MIB,
        max,
        name,
        ReportAs::Usable,
        Lifetime::Boot,
    )?;
    // SAFETY: just reserved.
    unsafe { parkboot::bulk::copy_raw(addr as *mut u8, bytes.as_ptr(), bytes.len()) };
    Ok(addr)
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
    // Every segment must land in free RAM: a clash with parkboot's image, the park
    // region or firmware memory is an error before anything is copied.
    for segment in plan.segments.iter() {
        s.memory.reserve(
            segment.dest,
            segment.mem_size.max(1),
            "multiboot2 kernel segment",
            ReportAs::Usable,
            Lifetime::Boot,
        )?;
    }
    for segment in plan.segments.iter() {
        let data = &bytes[segment.file_offset..segment.file_offset + segment.file_size];
        // SAFETY: reserved above for this segment (mem_size >= file_size, checked by
        // the plan); the pristine image is apart from every reservation.
        unsafe {
            parkboot::bulk::copy_raw(segment.dest as *mut u8, data.as_ptr(), data.len());
            parkboot::bulk::zero_raw(
                (segment.dest + segment.file_size as u64) as *mut u8,
                (segment.mem_size - segment.file_size as u64) as usize,
            );
        }
    }
    let module = match initrd {
        Some(initrd) => Some((
            reserve_copy(s, initrd.bytes(), FOUR_GIB, "multiboot2 module")?,
            initrd.len,
        )),
        None => None,
    };
    let mbi = s.memory.allocate(
        MBI_BYTES,
        PAGE,
        ONE_MIB,
        FOUR_GIB,
        "multiboot2 boot information",
        ReportAs::Usable,
        Lifetime::Boot,
    )?;
    // SAFETY: just reserved.
    let buf = unsafe { core::slice::from_raw_parts_mut(mbi as *mut u8, MBI_BYTES as usize) };
    let mut info = multiboot2::InfoBuilder::new(buf);
    info.cmdline(entry.cmdline.as_str())
        .loader_name(LOADER_NAME);
    if let Some((start, len)) = module {
        info.module(start as u32, (start + len as u64) as u32, "initrd");
    }
    stamp(s, STAMP_COPIED);
    let (lower, upper) = basic_meminfo(&s.memory);
    info.basic_meminfo(lower, upper);
    info.memory_map(
        s.memory
            .kernel_view()
            .map(|(start, size, report)| (start, size, report.multiboot2_type())),
    );
    if let Some(parked) = &s.parked {
        let tag = Multiboot2ParkbootTag {
            tag_type: MULTIBOOT2_TAG_TYPE_PARKBOOT,
            size: core::mem::size_of::<Multiboot2ParkbootTag>() as u32,
            park_table: parked.layout.table,
            park_table_version: PARK_TABLE_VERSION,
            iteration,
            iterations,
            reserved: 0,
        };
        // SAFETY: plain integers, viewed as bytes.
        let tag_bytes = unsafe {
            core::slice::from_raw_parts(
                &tag as *const _ as *const u8,
                core::mem::size_of::<Multiboot2ParkbootTag>(),
            )
        };
        info.raw_tag(MULTIBOOT2_TAG_TYPE_PARKBOOT, &tag_bytes[8..]);
        parked.table.boots.fetch_add(1, Ordering::AcqRel);
    }
    stamp(s, STAMP_BOOT_INFO);
    // SAFETY: the RSDP parkboot built (or the platform's), 36 bytes, identity-mapped.
    let rsdp = unsafe { core::slice::from_raw_parts(s.kernel_rsdp as *const u8, RSDP_V2_BYTES) };
    info.acpi_new_rsdp(rsdp);
    stamp(s, STAMP_ACPI);
    info.finish().map_err(EntryError::BootInfo)?;
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
        parkboot::handoff::enter_protected_mode32(
            plan.entry,
            multiboot2::BOOTLOADER_MAGIC,
            mbi as u32,
            arch::boot_stack_top() as u32,
        )
    }
}

/// Multiboot2 basic meminfo: KiB of RAM from 0 up to 640 KiB, and from 1 MiB up to the
/// first hole.
fn basic_meminfo(memory: &MemoryMap) -> (u32, u32) {
    const LOWER_END: u64 = 640 * 1024;
    let mut lower = 0;
    let mut upper_end = ONE_MIB;
    for region in memory
        .platform_regions()
        .iter()
        .filter(|r| r.kind.is_usable())
    {
        if region.start == 0 {
            lower = region.end().min(LOWER_END);
        }
        if region.start <= upper_end && region.end() > upper_end {
            upper_end = region.end();
        }
    }
    (
        (lower / 1024) as u32,
        ((upper_end - ONE_MIB).min(u32::MAX as u64 * 1024) / 1024) as u32,
    )
}

/// Where a park-aware kernel gives the boot processor back (see `arch/reentry.S`).
pub extern "C" fn reentry(request: u64, report_addr: u64) -> ! {
    exceptions::init();
    let back_tsc = cpu::rdtsc();
    let s = state();
    let report = (report_addr != 0).then(|| {
        // SAFETY: the kernel passed it; a bad address is at worst a page fault, which
        // the exception handler reports.
        unsafe { core::ptr::read_unaligned(report_addr as *const KernelReport) }
    });
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
        cpu::wait_until(deadline, || table.parked_count() >= parked.aps_parked);
        aps_parked = table.parked_count();
        cpus_woken = table
            .cpus()
            .iter()
            .zip(current.wake_counts.iter())
            .filter(|(slot, before)| slot.wake_count.load(Ordering::Acquire) > **before)
            .count() as u32;
        if aps_parked != parked.aps_parked {
            passed = false;
            log::error!(
                "entry '{}' iteration {}: only {} of {} APs are parked again",
                name,
                current.iteration,
                aps_parked,
                parked.aps_parked
            );
            for slot in table
                .cpus()
                .iter()
                .filter(|s| s.state() != Some(CpuState::Parked) && s.apic_id != table.boot_apic_id)
            {
                log::error!(
                    "  APIC ID {} is {}",
                    slot.apic_id,
                    slot.state().map(CpuState::name).unwrap_or("?")
                );
            }
        }
    }
    let (mut wake_min, mut wake_median, mut wake_max, mut wake_all) = (0, 0, 0, 0);
    match report {
        Some(r) if r.is_valid() => {
            wake_min = r.wake_ns_min;
            wake_median = r.wake_ns_median;
            wake_max = r.wake_ns_max;
            wake_all = r.wake_all_ns;
            if r.status != 0 {
                passed = false;
                log::error!(
                    "entry '{}' iteration {}: the kernel reports failure {}: {}",
                    name,
                    current.iteration,
                    r.status,
                    r.message()
                );
            }
        }
        Some(_) => log::warn!(
            "entry '{}': the kernel's report at {:#x} has no valid signature",
            name,
            report_addr
        ),
        None => {}
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
    loop_log().push(IterationRecord {
        entry: current.entry as u8,
        iteration: current.iteration,
        cycle_ns,
        load_ns,
        phases,
        cpus_woken,
        wake_ns_median: wake_median,
        wake_ns_min: wake_min,
        wake_ns_max: wake_max,
        wake_all_ns: wake_all,
        passed,
    });
    let next = if !passed {
        s.schedule.entry_failed()
    } else {
        match ReentryRequest::from_raw(request) {
            Some(ReentryRequest::SameEntry) => s.schedule.after(Request::SameEntry),
            Some(ReentryRequest::NextEntry) => s.schedule.after(Request::NextEntry),
            Some(ReentryRequest::Stop) => s.schedule.after(Request::Stop),
            None => {
                log::error!(
                    "entry '{}': unknown re-entry request {}; going on with the next entry",
                    name,
                    request
                );
                s.schedule.entry_failed()
            }
        }
    };
    run(next)
}

fn finish() -> ! {
    let s = state();
    let log = loop_log();
    if log.iterations_requested > 0 {
        log::info!(
            "loop report: {} of {} iterations done, {} failed",
            log.iterations_done,
            log.iterations_requested,
            log.iterations_failed
        );
        log::info!("  entry                iteration   cycle        parkboot (re-entry + copy + boot info + ACPI + hand-off)  APs woken  AP wake (kernel: min / median / max)");
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
            log::info!(
                "  {:20} {:9}   {:12} {} ({} + {} + {} + {} + {}) {:9}  {} / {} / {}{}",
                name,
                r.iteration,
                Duration(r.cycle_ns),
                Duration(r.phases.total_ns()),
                Duration(r.phases.reentry_ns),
                Duration(r.phases.copy_ns),
                Duration(r.phases.boot_info_ns),
                Duration(r.phases.acpi_ns),
                Duration(r.phases.handoff_ns),
                r.cpus_woken,
                Duration(r.wake_ns_min),
                Duration(r.wake_ns_median),
                Duration(r.wake_ns_max),
                if r.passed { "" } else { "  FAILED" }
            );
        }
    }
    // SAFETY: as for `loop_log`.
    let scratch = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
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
    if let Some(w) = wake_all {
        log::info!("  wake-all of every AP (kernel) min / median / max: {}", w);
    }
    let summary = summary();
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
