//! What the kexec loop keeps while kernels run (parkboot's stack does not survive
//! them): the boot state, the loop's log and summary, the images every iteration reloads
//! from, and why an entry could not be booted.

use crate::arch::cpu;
use crate::parking::{FirmwareMap, Parked};
use core::fmt;
use core::mem::MaybeUninit;
use park::table::MAX_PARKED_CPUS;
use parkboot::config::{Config, Entry, Sha256Pin, Source};
use parkboot::flow::boot_loop::{LoopLog, Schedule, MAX_RECORDED_ITERATIONS};
use parkboot::kernels::gzip::GzipError;
use parkboot::kernels::linux::LinuxError;
use parkboot::kernels::multiboot2::Mb2Error;
use parkboot::memory::{MemoryError, MemoryMap};
use parkboot::platform::acpi::AcpiError;
use parkboot::platform::cbfs::{Cbfs, CbfsError};
use parkboot::platform::fw_cfg::{FwCfg, FwCfgError, IoPorts};
use parkboot::platform::Platform;
use parkboot::racy_cell::RacyCell;

/// Room for one AP's entry in the summary's `per_ap` list (about 110 bytes at most).
pub const PER_AP_JSON_BYTES: usize = 128;
/// Everything but `per_ap` fits in a few KiB; `per_ap` has its own bound.
pub const SUMMARY_CAPACITY: usize = 4096 + PER_AP_JSON_BYTES * MAX_PARKED_CPUS;

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

pub(super) const PHASE_STAMPS: usize = 5;
pub(super) const STAMP_COPIED: usize = 1;
pub(super) const STAMP_BOOT_INFO: usize = 2;
pub(super) const STAMP_ACPI: usize = 3;
pub(super) const STAMP_JUMP: usize = 4;

/// Records the end of a load phase of the iteration in flight.
pub(super) fn stamp(s: &mut BootState, phase: usize) {
    stamp_current(&mut s.current, phase);
}

/// [`stamp`] on the iteration in flight alone, for code that holds other parts of the
/// boot state.
pub(super) fn stamp_current(current: &mut Option<Current>, phase: usize) {
    if let Some(current) = current.as_mut() {
        if let Some(stamp) = current.stamps.get_mut(phase) {
            *stamp = cpu::rdtsc();
        }
    }
}

/// The iteration in flight while a kernel runs.
pub(super) struct Current {
    pub(super) entry: usize,
    pub(super) iteration: u32,
    pub(super) iterations: u32,
    pub(super) start_tsc: u64,
    /// TSC at the end of each load phase: `[start, copied, boot information, ACPI,
    /// jump]` (see `LoadPhases::from_stamps`); 0 = not reached.
    pub(super) stamps: [u64; PHASE_STAMPS],
    pub(super) wake_counts: [u64; MAX_PARKED_CPUS],
    /// APs parked (and so advertised in the MADT) when this kernel was booted: how
    /// many must be parked again when it gives the boot processor back.
    pub(super) aps_parked: u32,
    /// Slot states and refusal counts when this kernel was booted.
    pub(super) before: Option<crate::misbehaviour::BeforeBoot>,
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
    /// CBFS in the boot media (coreboot entry only).
    pub cbfs: Option<Cbfs<'static>>,
    /// CPUs the kernels are told to expect (`parkboot.cpus=`): every CPU in the MADT,
    /// or, when parked, the ones the kernels' MADT advertises.
    pub cpus: u32,
    /// The kernels' ACPI tables, emitted afresh before every boot (parked mode only).
    pub kernel_tables: Option<crate::kernel_tables::KernelTables>,
    /// parkboot's page tables, loaded again at the re-entry vector.
    pub firmware_cr3: u64,
    pub firmware_cr3_la57: u64,
    pub(super) images: [Option<Image>; 8],
    pub(super) initrds: [Option<Image>; 8],
    pub(super) schedule: Schedule,
    pub(super) current: Option<Current>,
    /// Park table fields, slot states and counts parkboot found wrong and repaired
    /// after kernels re-entered.
    pub(super) table_repairs: u64,
}

static STATE: RacyCell<MaybeUninit<BootState>> = RacyCell::new(MaybeUninit::uninit());
/// Kept apart from `BootState` because they are large: they live in .bss only.
static LOOP_LOG: RacyCell<LoopLog> = RacyCell::new(LoopLog::new());
static SUMMARY: RacyCell<heapless::String<SUMMARY_CAPACITY>> =
    RacyCell::new(heapless::String::new());
static SCRATCH: RacyCell<[u64; MAX_RECORDED_ITERATIONS]> =
    RacyCell::new([0; MAX_RECORDED_ITERATIONS]);

/// The loop's log of iterations.
///
/// # Safety
///
/// No other reference from this function may be in use while the returned one is.
pub(super) unsafe fn loop_log() -> &'static mut LoopLog {
    // SAFETY: the caller's promise; only the boot processor runs parkboot's Rust code.
    unsafe { LOOP_LOG.get_mut() }
}

/// Room for the loop report's sorting.
///
/// # Safety
///
/// As for [`loop_log`].
pub(super) unsafe fn scratch() -> &'static mut [u64; MAX_RECORDED_ITERATIONS] {
    // SAFETY: as for `loop_log`.
    unsafe { SCRATCH.get_mut() }
}

/// Logs the summary built so far, for a kernel that never comes back (Linux kexecs
/// itself): what parkboot found and did up to the hand-off. The harness merges it with
/// the summary the kernel's side prints.
pub fn log_summary_so_far() {
    // SAFETY: holders of a reference from `summary` do not call this while they use it
    // (its contract says so).
    let summary = unsafe { summary() };
    log::info!("parkboot: summary: {}}}", summary);
}

/// The summary JSON, built up from boot to the end, without its closing brace.
///
/// # Safety
///
/// As for [`loop_log`]; and [`log_summary_so_far`] must not run while the returned
/// reference is in use.
pub unsafe fn summary() -> &'static mut heapless::String<SUMMARY_CAPACITY> {
    // SAFETY: as for `loop_log`.
    unsafe { SUMMARY.get_mut() }
}

/// The boot state.
///
/// # Safety
///
/// [`init_state`] has run, and no other reference from this function is used while
/// the returned one is: each of the loop's steps takes it afresh and none keeps it
/// across a call to another step.
pub(super) unsafe fn state() -> &'static mut BootState {
    // SAFETY: initialised (the caller's promise) and not aliased (likewise); only the
    // boot processor runs parkboot's Rust code.
    unsafe { STATE.get_mut().assume_init_mut() }
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
        cbfs: Option<Cbfs<'static>>,
        cpus: u32,
        map: &FirmwareMap,
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
            cbfs,
            cpus,
            kernel_tables: None,
            images: [None; 8],
            initrds: [None; 8],
            schedule: Schedule::new(&[]),
            current: None,
            table_repairs: 0,
        }
    }
}

/// Why an entry could not be booted. parkboot logs it and goes on with the next entry.
pub enum EntryError {
    Memory(MemoryError),
    FwCfg(FwCfgError),
    Cbfs(CbfsError),
    Multiboot2(Mb2Error),
    Gzip(GzipError),
    Linux(LinuxError),
    NoFwCfg,
    NoCbfs,
    NotFound(heapless::String<64>),
    NotInCbfs(heapless::String<64>),
    NotAKernel,
    /// The loop asked for an entry the configuration does not have.
    NoEntry(usize),
    ModuleMissing(u32),
    BootInfo(Mb2Error),
    KernelTables(AcpiError),
    /// An image whose SHA-256 is not the one the configuration pins (the source and
    /// the pin are the entry's: [`EntryError::in_entry`] names them).
    PinMismatch {
        image: PinnedImage,
        found: Sha256Pin,
    },
}

/// Which of an entry's images a pin is for.
#[derive(Clone, Copy)]
pub enum PinnedImage {
    Kernel,
    Initrd,
}

impl PinnedImage {
    pub(super) fn name(self) -> &'static str {
        match self {
            PinnedImage::Kernel => "kernel",
            PinnedImage::Initrd => "initrd",
        }
    }

    /// The entry's source and pin for this image.
    pub(super) fn of(self, entry: &Entry) -> (Option<&Source>, Option<Sha256Pin>) {
        match self {
            PinnedImage::Kernel => (Some(&entry.kernel), entry.kernel_sha256),
            PinnedImage::Initrd => (entry.initrd.as_ref(), entry.initrd_sha256),
        }
    }
}

/// An [`EntryError`] with the entry it happened in, for errors whose message needs
/// the entry's settings (kept out of the error itself, which stays small).
pub struct InEntry<'a> {
    error: &'a EntryError,
    entry: Option<&'a Entry>,
}

impl EntryError {
    pub fn in_entry<'a>(&'a self, entry: Option<&'a Entry>) -> InEntry<'a> {
        InEntry { error: self, entry }
    }
}

impl fmt::Display for InEntry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.error, self.entry) {
            (EntryError::PinMismatch { image, found }, Some(entry)) => {
                let (source, pinned) = image.of(entry);
                f.write_str(image.name())?;
                if let Some(source) = source {
                    write!(f, " {source}")?;
                }
                write!(f, ": SHA-256 is {found}, the configuration pins ")?;
                match pinned {
                    Some(pinned) => write!(f, "{pinned}; not booted"),
                    None => f.write_str("another; not booted"),
                }
            }
            (error, _) => write!(f, "{error}"),
        }
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Memory(e) => write!(f, "{e}"),
            EntryError::FwCfg(e) => write!(f, "fw_cfg: {e}"),
            EntryError::Cbfs(e) => write!(f, "{e}"),
            EntryError::Multiboot2(e) => write!(f, "{e}"),
            EntryError::Gzip(e) => write!(f, "{e}"),
            EntryError::Linux(e) => write!(f, "{e}"),
            EntryError::NoFwCfg => write!(f, "no QEMU fw_cfg device to load it from"),
            EntryError::NoCbfs => write!(
                f,
                "no CBFS to load it from (parkboot was not started by coreboot, or the boot media has none)"
            ),
            EntryError::NotFound(name) => write!(f, "fw_cfg has no file '{name}'"),
            EntryError::NotInCbfs(name) => write!(f, "CBFS has no file '{name}'"),
            EntryError::NoEntry(index) => write!(f, "no entry {index} in the configuration"),
            EntryError::NotAKernel => write!(
                f,
                "neither a multiboot2 kernel (no header in the first 32 KiB) nor a Linux bzImage (no 'HdrS' at 0x202)"
            ),
            EntryError::ModuleMissing(n) => write!(f, "there is no boot module {n}"),
            EntryError::BootInfo(e) => write!(f, "building the boot information: {e}"),
            EntryError::KernelTables(e) => write!(f, "emitting the kernels' ACPI tables: {e}"),
            EntryError::PinMismatch { image, found } => write!(
                f,
                "{}: SHA-256 is {found}, not the one the configuration pins; not booted",
                image.name()
            ),
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

impl From<CbfsError> for EntryError {
    fn from(e: CbfsError) -> Self {
        EntryError::Cbfs(e)
    }
}

impl From<GzipError> for EntryError {
    fn from(e: GzipError) -> Self {
        EntryError::Gzip(e)
    }
}

impl From<Mb2Error> for EntryError {
    fn from(e: Mb2Error) -> Self {
        EntryError::Multiboot2(e)
    }
}

impl From<LinuxError> for EntryError {
    fn from(e: LinuxError) -> Self {
        EntryError::Linux(e)
    }
}

/// Stores the boot state; `start` calls it once, before anything reads it.
///
/// # Safety
///
/// No reference from [`state`] may be in use (none can be before the first call).
pub(super) unsafe fn init_state(boot_state: BootState) {
    // SAFETY: the caller's promise: nothing else refers to the state now.
    unsafe { STATE.get_mut().write(boot_state) };
}
