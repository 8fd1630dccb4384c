//! One run of the test kernel: check what parkboot handed over, wake the parked APs
//! through both doors, measure, and give control back to parkboot.
//!
//! Every check has a number ([`Check`]); the first that fails ends the run, and its
//! number is the report's `status`. Nothing survives from one run to the next: parkboot
//! loads a fresh copy of the image for every iteration, and all mutable state is in
//! .bss, which the entry code zeroes.

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::mem::{align_of, offset_of, size_of, MaybeUninit};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use heapless::Vec;
use park::mailbox::{MailboxCommand, WakeupMailbox, MAILBOX_ALIGN, MAILBOX_SIZE};
use park::reentry::{
    KernelReport, Multiboot2ParkbootTag, ReentryRequest, MULTIBOOT2_TAG_TYPE_PARKBOOT,
};
use park::table::{
    doorbell, flags, offsets, CpuSlot, CpuState, ParkTable, PARK_TABLE_VERSION, PARK_TIMER_VECTOR,
    PARK_WAKE_VECTOR,
};

/// CPUs this kernel keeps a proof of wakeup for. Its own limit, not the park table's:
/// the table says how many slots it has (`slot_count`), and the kernel refuses a table
/// with more CPUs than this instead of reading beyond `AP_PROOFS`.
const MAX_CPUS: usize = 1024;

/// The mask bit of a local-APIC LVT entry.
const LVT_MASKED: u32 = 1 << 16;

use crate::acpi::{self, PhysicalMemory};
use crate::bootinfo::{self, BootInfo, TAG_HEADER_SIZE};
use crate::serial::{exit_qemu, say, Serial, COM1, QEMU_EXIT_FAIL, QEMU_EXIT_PASS};

/// GDT selectors of the kernel's own GDT (entry.S lays the descriptors out in this
/// order: the same indexes as Linux's 64-bit boot protocol and parkboot's park GDT).
const SEL_CODE32: u16 = 0x08;
const SEL_CODE64: u16 = 0x10;
const SEL_DATA: u16 = 0x18;

/// How long to wait for an AP's acknowledgement, its proof, or the parked count. An AP
/// that answers at all answers within microseconds on an idle machine, but a vCPU of an
/// overcommitted VM (the test harness runs several QEMUs on few host CPUs) can be
/// descheduled for hundreds of milliseconds.
const WAIT_TIMEOUT_SECONDS: u64 = 5;
const NS_PER_SECOND: u128 = 1_000_000_000;
/// The kernel's identity map ends here (entry.S maps 0-4 GiB).
const MAPPED_LIMIT: u64 = 4 << 30;
/// Where the APIC ID of a proof not stamped yet points: no CPU has it.
const NO_APIC_ID: u32 = u32::MAX;
/// Bytes of `KernelReport::message`, the last kept for the NUL.
const MESSAGE_BYTES: usize = 64;

/// Command line option choosing what to ask parkboot for at the end of the run.
const REQUEST_OPTION: &str = "testkernel.request=";
const REQUEST_SAME: &str = "same";
const REQUEST_NEXT: &str = "next";
const REQUEST_STOP: &str = "stop";
/// Command line option: after the normal checks, ring the doorbell while one AP is
/// held running in the kernel, release it, and check it does not answer that ring.
const STALE_DOORBELL_OPTION: &str = "testkernel.stale-doorbell";

/// entry.S's hold entry spins until this is nonzero (set by the boot processor).
static AP_HOLD_RELEASE: AtomicU32 = AtomicU32::new(0);
/// Command line option: before returning to parkboot, zero the MailBoxAddress of the
/// MADT's Multiprocessor Wakeup entry in place, as Linux does when it cannot hand CPUs
/// back (`acpi_mp_disable_offlining`). The next kernel must still find it intact.
const CLOBBER_ACPI_OPTION: &str = "testkernel.clobber-acpi";
/// Command line option: wake parked CPUs through the mailbox and the doorbell only,
/// without sending the HLT wait's wake interrupt (see `apic`): the watcher wakes them.
const NO_RING_OPTION: &str = "testkernel.ring=off";
/// Command line option: misbehave on purpose, to test how parkboot copes.
const MISBEHAVE_OPTION: &str = "testkernel.misbehave=";

/// The ways `testkernel.misbehave=` can misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Misbehave {
    /// `keep-aps`: after the checks, wake every parked AP into the hold entry and
    /// return to parkboot without releasing them: they never come back.
    KeepAps,
    /// `corrupt-table`: before returning, write garbage into park table fields only
    /// parkboot owns, a slot's APIC ID and state, the boot processor's state and
    /// `parked_count`.
    CorruptTable,
    /// `bad-vector`: after the checks, wake the first parked AP through the mailbox
    /// with vector 0, a non-canonical one and one beyond RAM, then ring the doorbell
    /// with a non-canonical vector: every CPU must refuse, record it and stay parked.
    BadVector,
    /// `report-signature`, `report-message`, `report-counts`, `report-unmapped`: return
    /// a report with a bad signature; a failure whose message has no NUL and is not
    /// text; counts and latencies that contradict each other; or at an address with
    /// no RAM behind it.
    ReportSignature,
    ReportMessage,
    ReportCounts,
    ReportUnmapped,
    /// `orphan-doorbell`: after the checks, take the first parked AP's doorbell and
    /// never send its wake interrupt (as a ringer stopped between the two would), then
    /// ask it for a mailbox Test: it must still answer.
    OrphanDoorbell,
}

impl Misbehave {
    fn parse(value: &str) -> Option<Misbehave> {
        Some(match value {
            "keep-aps" => Misbehave::KeepAps,
            "corrupt-table" => Misbehave::CorruptTable,
            "bad-vector" => Misbehave::BadVector,
            "report-signature" => Misbehave::ReportSignature,
            "report-message" => Misbehave::ReportMessage,
            "report-counts" => Misbehave::ReportCounts,
            "report-unmapped" => Misbehave::ReportUnmapped,
            "orphan-doorbell" => Misbehave::OrphanDoorbell,
            _ => return None,
        })
    }
}

/// Wakeup vectors parked CPUs must refuse: zero, non-canonical, canonical but far
/// beyond any RAM this kernel is given.
const NON_CANONICAL_VECTOR: u64 = 0x8000_0000_0000_1000;
const BEYOND_RAM_VECTOR: u64 = 1 << 46;
const BAD_VECTORS: [u64; 3] = [0, NON_CANONICAL_VECTOR, BEYOND_RAM_VECTOR];
/// Where `report-unmapped` says its report is: no RAM and not identity-mapped.
const UNMAPPED_REPORT: u64 = 1 << 45;
/// What `corrupt-table` writes.
const GARBAGE_APIC_ID: u32 = 0xdead;
const GARBAGE_STATE: u32 = 0x77;
const GARBAGE_COUNT_EXTRA: u32 = 5;

/// What an AP leaves behind when it ran the kernel's AP entry, one per park slot
/// (indexed like the slots). A cache line each, so APs stamping at the same time do not
/// share lines. entry.S writes `apic_id`, then `tsc` (nonzero, the boot processor's
/// signal).
#[repr(C, align(64))]
struct ApProof {
    apic_id: AtomicU32,
    /// The AP's local APIC as it found it at the entry: LVT timer, and the ISR and IRR
    /// words that hold the park timer's vector (all 0 when the APIC is disabled).
    lvt_timer: AtomicU32,
    timer_isr: AtomicU32,
    timer_irr: AtomicU32,
    tsc: AtomicU64,
}

impl ApProof {
    const fn new() -> ApProof {
        ApProof {
            apic_id: AtomicU32::new(0),
            lvt_timer: AtomicU32::new(0),
            timer_isr: AtomicU32::new(0),
            timer_irr: AtomicU32::new(0),
            tsc: AtomicU64::new(0),
        }
    }

    fn reset(&self) {
        self.apic_id.store(NO_APIC_ID, Ordering::Relaxed);
        self.lvt_timer.store(0, Ordering::Relaxed);
        self.timer_isr.store(0, Ordering::Relaxed);
        self.timer_irr.store(0, Ordering::Relaxed);
        self.tsc.store(0, Ordering::Release);
    }

    /// `Err` with what is wrong when the AP came with the park timer still running, or
    /// the park timer's or the watcher's wake vector pending or in service (see
    /// `Check::ParkTimerLeftBehind`).
    fn park_timer_left_behind(&self) -> Result<(), (u32, bool, bool)> {
        let lvt_timer = self.lvt_timer.load(Ordering::Acquire);
        let vector_bit = (1u32 << (PARK_TIMER_VECTOR % 32)) | (1u32 << (PARK_WAKE_VECTOR % 32));
        let in_service = self.timer_isr.load(Ordering::Acquire) & vector_bit != 0;
        let pending = self.timer_irr.load(Ordering::Acquire) & vector_bit != 0;
        // An LVT of 0 means the APIC was disabled at the entry: no timer at all.
        if (lvt_timer != 0 && lvt_timer & LVT_MASKED == 0) || in_service || pending {
            Err((lvt_timer, in_service, pending))
        } else {
            Ok(())
        }
    }

    /// The TSC stamp, once the AP has written it.
    fn stamp(&self) -> Option<u64> {
        match self.tsc.load(Ordering::Acquire) {
            0 => None,
            tsc => Some(tsc),
        }
    }
}

// The AP entry reads the ISR and IRR words of the park timer's vector: the wake
// vector must be in the same word.
const _: () = assert!(PARK_TIMER_VECTOR / 32 == PARK_WAKE_VECTOR / 32);

// The AP entry turns a slot address into an index with the table's own slots_offset
// and slot_size, and an index into a proof address with a shift.
const _: () = assert!(size_of::<ApProof>().is_power_of_two());

static AP_PROOFS: [ApProof; MAX_CPUS] = [const { ApProof::new() }; MAX_CPUS];

/// The report parkboot reads at re-entry; in .bss, filled in at the end of the run.
static mut REPORT: MaybeUninit<KernelReport> = MaybeUninit::zeroed();

global_asm!(
    concat!(include_str!("../../../../park/src/asm/long_mode.inc"), include_str!("entry.S")),
    kernel_main = sym kernel_main,
    exception_handler = sym exception_handler,
    ap_proofs = sym AP_PROOFS,
    ap_hold_release = sym AP_HOLD_RELEASE,
    BOOTLOADER_MAGIC = const bootinfo::BOOTLOADER_MAGIC,
    TAG_CMDLINE = const bootinfo::TAG_CMDLINE,
    TAG_MMAP = const bootinfo::TAG_MMAP,
    TAG_ACPI_NEW_RSDP = const bootinfo::TAG_ACPI_NEW_RSDP,
    SEL_CODE32 = const SEL_CODE32,
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    COM1 = const COM1,
    QEMU_DEBUG_EXIT_PORT = const crate::serial::QEMU_DEBUG_EXIT_PORT,
    QEMU_EXIT_FAIL = const QEMU_EXIT_FAIL,
    TABLE_SLOTS_OFFSET = const offsets::TABLE_SLOTS_OFFSET,
    TABLE_SLOT_SIZE = const offsets::TABLE_SLOT_SIZE,
    TABLE_RESET_VECTOR = const offsets::TABLE_RESET_VECTOR,
    SLOT_APIC_ID = const offsets::SLOT_APIC_ID,
    MAX_CPUS = const MAX_CPUS,
    PROOF_APIC_ID = const offset_of!(ApProof, apic_id),
    PROOF_TSC = const offset_of!(ApProof, tsc),
    PROOF_LVT_TIMER = const offset_of!(ApProof, lvt_timer),
    PROOF_TIMER_ISR = const offset_of!(ApProof, timer_isr),
    PROOF_TIMER_IRR = const offset_of!(ApProof, timer_irr),
    TIMER_VECTOR_WORD = const (PARK_TIMER_VECTOR / 32) as u32,
    PROOF_SIZE_SHIFT = const size_of::<ApProof>().trailing_zeros(),
    options(att_syntax)
);

/// Slot `index`, one of the indexes the kernel took from `table.cpus()`.
fn slot_at(table: &ParkTable, index: usize) -> &CpuSlot {
    match table.cpus().get(index) {
        Some(slot) => slot,
        // The indexes come from enumerating those same slots.
        None => unreachable!("slot index {index} beyond cpu_count"),
    }
}

extern "C" {
    /// entry.S: where woken APs go (both doors).
    static testkernel_ap_entry: u8;
    /// entry.S: the same, but the AP waits for `AP_HOLD_RELEASE` before handing back.
    static testkernel_ap_hold_entry: u8;
}

fn ap_hold_entry() -> u64 {
    // Only the address of the code label is taken, never its bytes.
    core::ptr::addr_of!(testkernel_ap_hold_entry) as u64
}

fn ap_entry() -> u64 {
    // Only the address of the code label is taken, never its bytes.
    core::ptr::addr_of!(testkernel_ap_entry) as u64
}

fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC only reads the time stamp counter.
    unsafe { asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// Polls `done` until it holds or `timeout` TSC ticks pass; whether it held.
fn wait_until(timeout: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = rdtsc();
    while !done() {
        if rdtsc().wrapping_sub(start) > timeout {
            return done();
        }
        core::hint::spin_loop();
    }
    true
}

fn ticks_to_ns(ticks: u64, tsc_hz: u64) -> u64 {
    (u128::from(ticks) * NS_PER_SECOND / u128::from(tsc_hz.max(1))) as u64
}

/// Physical memory through the kernel's identity map of the first 4 GiB.
struct Identity;

impl Identity {
    fn mapped(address: u64, len: usize) -> bool {
        address != 0
            && address
                .checked_add(len as u64)
                .is_some_and(|end| end <= MAPPED_LIMIT)
    }
}

impl PhysicalMemory for Identity {
    fn bytes(&self, address: u64, len: usize) -> Option<&[u8]> {
        if !Identity::mapped(address, len) {
            return None;
        }
        // SAFETY: identity-mapped (checked above); the boot information and the ACPI
        // tables are not written while the kernel reads them.
        Some(unsafe { core::slice::from_raw_parts(address as *const u8, len) })
    }
}

/// The checks of one run, in order; a failed check's number is the report's status.
#[repr(u32)]
#[derive(Clone, Copy, Debug)]
enum Check {
    /// EAX is the multiboot2 magic; the boot information's size and tags are sane.
    BootInfo = 1,
    /// The parkboot tag is present, of the right size and table version.
    ParkbootTag,
    /// The park table is mapped, aligned and valid, with a TSC rate and a mailbox.
    ParkTable,
    /// The command line tag is present and its `testkernel.request=` is known.
    CommandLine,
    /// The memory map tag is present.
    MemoryMap,
    /// The park table's range is reserved (type 2) in the memory map.
    ParkTableReserved,
    /// The mailbox page is ACPI NVS (type 4) in the memory map.
    MailboxAcpiNvs,
    /// The RSDP tag is present and RSDP → XSDT → MADT walks.
    AcpiTables,
    /// The MADT has a Multiprocessor Wakeup entry, version 1, 24 bytes.
    WakeupEntry,
    /// Its MailBoxAddress and ResetVector are the park table's.
    WakeupMatchesParkTable,
    /// The XSDT and MADT parkboot built are ACPI NVS (type 4) in the memory map: it
    /// writes them again before every boot, so no kernel may reclaim them.
    AcpiTablesNvs,
    /// The MADT advertises (Enabled or Online Capable) only the boot processor and
    /// CPUs that are parked: an OS would wait forever for any other.
    AdvertisedCpusParked,
    /// `parked_count` equals the slots in state Parked.
    ParkedCount,
    /// The mailbox holds no outstanding command when the kernel starts.
    MailboxIdle,
    /// Each AP acknowledges its Wakeup (command back to Noop).
    MailboxAck,
    /// Each AP woken through the mailbox runs the AP entry.
    MailboxProof,
    /// The proof carries the APIC ID of the AP that was woken.
    ProofApicId,
    /// After the mailbox wakeups every AP is parked again.
    ParkedAgainAfterMailbox,
    /// Every AP runs the AP entry after the wake-all doorbell.
    WakeAllProof,
    /// After the wake-all every AP is parked again.
    ParkedAgainAfterWakeAll,
    /// `wake_all_vector` is 0 when the kernel starts: parkboot cleared the vector of
    /// whoever rang the doorbell before (parkboot's self-check or the previous kernel).
    WakeAllVectorCleared,
    /// `testkernel.stale-doorbell`: an AP kept running in the kernel while the doorbell
    /// rang parks again on return and never answers that old ring.
    StaleDoorbell,
    /// The table's checksum (flag CHECKSUM) matches its fields: parkboot wrote them
    /// and nobody else changed them (or parkboot repaired them).
    TableChecksum,
    /// `testkernel.misbehave=bad-vector`: each bad vector is acknowledged, recorded in
    /// the slot as refused, and the CPU stays parked.
    BadVectorRefused,
    /// `testkernel.misbehave=keep-aps`: every parked AP ran the hold entry.
    KeepAps,
    /// `testkernel.misbehave=` names a known misbehaviour.
    MisbehaveOption,
    /// A woken AP's local-APIC timer is masked, with nothing of the park timer's or the
    /// wake vector pending or in service: the HLT wait's interrupts stay in parkboot.
    ParkTimerLeftBehind,
    /// In the HLT wait exactly one parked CPU is the watcher and every other parked CPU
    /// sleeps with its doorbell armed (so only the watcher takes timer ticks).
    OneWatcher,
    /// `testkernel.misbehave=orphan-doorbell`: an AP whose doorbell was taken and never
    /// rung still answers the mailbox.
    OrphanDoorbell,
}

/// Text of at most `MESSAGE_BYTES - 1` bytes (cut at a character boundary), for the
/// report's NUL-terminated message.
struct Message {
    bytes: [u8; MESSAGE_BYTES],
    len: usize,
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            if self.len + encoded.len() >= MESSAGE_BYTES {
                break;
            }
            self.bytes[self.len..self.len + encoded.len()].copy_from_slice(encoded);
            self.len += encoded.len();
        }
        Ok(())
    }
}

/// The first failed check: printed in full when it happens, kept (shortened) for the
/// report.
struct Failure {
    check: Check,
    message: Message,
}

impl Failure {
    fn new(check: Check, what: fmt::Arguments) -> Failure {
        say!("FAIL: check {} ({:?}): {}", check as u32, check, what);
        let mut message = Message {
            bytes: [0; MESSAGE_BYTES],
            len: 0,
        };
        let _ = message.write_fmt(what);
        Failure { check, message }
    }
}

/// Returns early from a check with a [`Failure`].
macro_rules! fail {
    ($check:expr, $($arg:tt)*) => {
        return Err(Failure::new($check, format_args!($($arg)*)))
    };
}

/// What a run found and measured; what the report and the summary line are made of.
struct Run {
    table: Option<&'static ParkTable>,
    request: ReentryRequest,
    iteration: u32,
    iterations: u32,
    aps_expected: u32,
    aps_woken: u32,
    /// Mailbox wake latencies (ns), one per AP.
    wake_ns: Vec<u64, MAX_CPUS>,
    wake_all_ns: u64,
    /// `testkernel.stale-doorbell` was given.
    stale_doorbell: bool,
    /// Where `testkernel.clobber-acpi` writes zero before returning to parkboot.
    clobber_at: Option<u64>,
    /// `testkernel.misbehave=`.
    misbehave: Option<Misbehave>,
}

impl Run {
    /// min, median (the lower middle one for an even count), max; zeros for no APs.
    fn wake_stats(&self) -> (u64, u64, u64) {
        let mut sorted = self.wake_ns.clone();
        sorted.sort_unstable();
        match (sorted.first(), sorted.last()) {
            (Some(&min), Some(&max)) => (min, sorted[(sorted.len() - 1) / 2], max),
            _ => (0, 0, 0),
        }
    }
}

/// The multiboot2 entry's Rust half (called by entry.S on the kernel's stack, in long
/// mode on the kernel's identity map).
extern "C" fn kernel_main(magic: u32, boot_info: u32) -> ! {
    let mut run = Run {
        table: None,
        request: ReentryRequest::SameEntry,
        iteration: 0,
        iterations: 0,
        aps_expected: 0,
        aps_woken: 0,
        wake_ns: Vec::new(),
        wake_all_ns: 0,
        stale_doorbell: false,
        clobber_at: None,
        misbehave: None,
    };
    let result = run_checks(magic, u64::from(boot_info), &mut run);
    finish(&run, result)
}

fn run_checks(magic: u32, boot_info: u64, run: &mut Run) -> Result<(), Failure> {
    // ---- the boot information ----
    if magic != bootinfo::BOOTLOADER_MAGIC {
        fail!(
            Check::BootInfo,
            "EAX {magic:#x} is not the multiboot2 magic"
        );
    }
    let Some(header) = Identity.bytes(boot_info, bootinfo::FIXED_HEADER_SIZE) else {
        fail!(
            Check::BootInfo,
            "boot information at {boot_info:#x} is not mapped"
        );
    };
    let total = match bootinfo::total_size(boot_info, header) {
        Ok(total) => total,
        Err(e) => fail!(Check::BootInfo, "boot information: {e}"),
    };
    let Some(bytes) = Identity.bytes(boot_info, total) else {
        fail!(
            Check::BootInfo,
            "boot information at {boot_info:#x} ({total} bytes) is not mapped"
        );
    };
    let info = match BootInfo::parse(bytes) {
        Ok(info) => info,
        Err(e) => fail!(Check::BootInfo, "boot information: {e}"),
    };
    say!(
        "boot information at {boot_info:#x}: {} bytes, {} tags, end tag present",
        info.total_size(),
        info.tags().count()
    );
    match info.boot_loader_name() {
        Some(name) => say!("boot loader: {name}"),
        None => say!("boot loader: (no name tag)"),
    }

    // ---- the parkboot tag and the park table ----
    let Some(tag) = info.find(MULTIBOOT2_TAG_TYPE_PARKBOOT) else {
        fail!(
            Check::ParkbootTag,
            "no parkboot tag ({MULTIBOOT2_TAG_TYPE_PARKBOOT:#x})"
        );
    };
    let tag_size = TAG_HEADER_SIZE + tag.body.len();
    if tag_size != size_of::<Multiboot2ParkbootTag>() {
        fail!(
            Check::ParkbootTag,
            "parkboot tag is {tag_size} bytes, not {}",
            size_of::<Multiboot2ParkbootTag>()
        );
    }
    // SAFETY: the tag's header and body lie in the validated boot information, and
    // its size is the struct's (checked above); read_unaligned needs no alignment.
    let tag: Multiboot2ParkbootTag = unsafe {
        core::ptr::read_unaligned(
            tag.body
                .as_ptr()
                .sub(TAG_HEADER_SIZE)
                .cast::<Multiboot2ParkbootTag>(),
        )
    };
    run.iteration = tag.iteration;
    run.iterations = tag.iterations;
    say!(
        "parkboot tag: iteration {}/{}, park table at {:#x} (version {})",
        tag.iteration,
        tag.iterations,
        tag.park_table,
        tag.park_table_version
    );
    if tag.park_table_version != PARK_TABLE_VERSION {
        fail!(
            Check::ParkbootTag,
            "park table version {} in the tag, the kernel knows {PARK_TABLE_VERSION}",
            tag.park_table_version
        );
    }
    let table_address = tag.park_table;
    if !Identity::mapped(table_address, size_of::<ParkTable>())
        || !table_address.is_multiple_of(align_of::<ParkTable>() as u64)
    {
        fail!(
            Check::ParkTable,
            "park table at {table_address:#x} is not mapped or not aligned"
        );
    }
    // SAFETY: mapped and aligned (checked above); parkboot keeps the table in reserved
    // memory for as long as CPUs are parked, and every field other CPUs write is atomic.
    let table: &'static ParkTable = unsafe { &*(table_address as *const ParkTable) };
    if let Err(problem) = table.check() {
        fail!(
            Check::ParkTable,
            "no valid park table at {table_address:#x}: {problem}"
        );
    }
    if !Identity::mapped(table_address, table.table_size as usize) {
        fail!(
            Check::ParkTable,
            "park table at {table_address:#x}+{:#x} is not all mapped",
            table.table_size
        );
    }
    if table.cpu_count as usize > MAX_CPUS {
        fail!(
            Check::ParkTable,
            "park table lists {} CPUs; this kernel keeps proofs for {MAX_CPUS}",
            table.cpu_count
        );
    }
    // From here on the kernel can return to parkboot.
    run.table = Some(table);
    let baseline = table.flags & flags::BASELINE_NO_PARK != 0;
    say!(
        "park table: {} CPUs, {} parked, boot APIC ID {}, mailbox {:#x}, ResetVector {:#x}, \
         re-entry vector {:#x}, TSC {} MHz, {} boots, {}",
        table.cpu_count,
        table.parked_count(),
        table.boot_apic_id,
        table.mailbox_address,
        table.reset_vector,
        table.reentry_vector,
        table.tsc_hz / 1_000_000,
        table.boots.load(Ordering::Acquire),
        if baseline {
            "baseline: nothing parked"
        } else if table.flags & flags::WAIT_MWAIT != 0 {
            "waiting with MWAIT"
        } else if table.flags & flags::WAIT_HLT != 0 {
            "waiting with HLT"
        } else {
            "waiting with PAUSE"
        }
    );
    if table.flags & flags::CHECKSUM != 0 && !table.checksum_matches() {
        fail!(
            Check::TableChecksum,
            "park table checksum {:#010x}, the fields give {:#010x?}",
            table.checksum,
            table.compute_checksum()
        );
    }
    if table.tsc_hz == 0 {
        fail!(Check::ParkTable, "park table has no TSC rate (tsc_hz 0)");
    }
    // The --no-park baseline has no mailbox and no ResetVector.
    if !baseline
        && (!Identity::mapped(table.mailbox_address, MAILBOX_SIZE)
            || !table.mailbox_address.is_multiple_of(MAILBOX_ALIGN as u64)
            || table.reset_vector == 0)
    {
        fail!(
            Check::ParkTable,
            "mailbox {:#x} not mapped or not page-aligned, or no ResetVector",
            table.mailbox_address
        );
    }

    // ---- the command line: what to ask parkboot for at the end ----
    let Some(cmdline) = info.command_line() else {
        fail!(
            Check::CommandLine,
            "no command line tag (requested in the header)"
        );
    };
    say!("command line: \"{cmdline}\"");
    for option in cmdline.split_ascii_whitespace() {
        if option == STALE_DOORBELL_OPTION {
            run.stale_doorbell = true;
        }
        if let Some(value) = option.strip_prefix(MISBEHAVE_OPTION) {
            match Misbehave::parse(value) {
                Some(misbehave) => run.misbehave = Some(misbehave),
                None => fail!(Check::MisbehaveOption, "unknown {MISBEHAVE_OPTION}{value}"),
            }
        }
        if let Some(value) = option.strip_prefix(REQUEST_OPTION) {
            run.request = match value {
                REQUEST_SAME => ReentryRequest::SameEntry,
                REQUEST_NEXT => ReentryRequest::NextEntry,
                REQUEST_STOP => ReentryRequest::Stop,
                _ => fail!(
                    Check::CommandLine,
                    "unknown {REQUEST_OPTION}{value} (same, next or stop)"
                ),
            };
        }
    }

    if baseline {
        say!("parkboot's baseline (park = off): no mailbox, nothing parked, nothing to wake");
        return Ok(());
    }
    // SAFETY: mapped and page-aligned (checked above); its fields are atomics.
    let mailbox: &WakeupMailbox = unsafe { &*(table.mailbox_address as *const WakeupMailbox) };

    // ---- the memory map ----
    let Some(map) = info.memory_map() else {
        fail!(Check::MemoryMap, "no usable memory map tag");
    };
    let table_size = u64::from(table.table_size);
    if !map.covers(table_address, table_size, bootinfo::MEMORY_RESERVED) {
        fail!(
            Check::ParkTableReserved,
            "park table {table_address:#x}+{table_size:#x} is not all reserved (type 2) in the \
             memory map (its start is {})",
            map.kind_at(table_address)
                .map_or("not listed", bootinfo::memory_kind_name)
        );
    }
    if !map.covers(
        table.mailbox_address,
        MAILBOX_SIZE as u64,
        bootinfo::MEMORY_ACPI_NVS,
    ) {
        fail!(
            Check::MailboxAcpiNvs,
            "mailbox page {:#x} is not ACPI NVS (type 4) in the memory map (it is {})",
            table.mailbox_address,
            map.kind_at(table.mailbox_address)
                .map_or("not listed", bootinfo::memory_kind_name)
        );
    }
    say!(
        "memory map: {} entries; park table {table_address:#x}-{:#x} reserved, mailbox page \
         {:#x} ACPI NVS",
        map.entries().count(),
        table_address + table_size,
        table.mailbox_address
    );

    // ---- ACPI: RSDP → XSDT → MADT → Multiprocessor Wakeup ----
    let Some(rsdp) = info.find(bootinfo::TAG_ACPI_NEW_RSDP) else {
        fail!(
            Check::AcpiTables,
            "no ACPI new RSDP tag (requested in the header)"
        );
    };
    let found = match acpi::find_wakeup(&Identity, rsdp.body) {
        Ok(found) => found,
        Err(e) => fail!(Check::AcpiTables, "ACPI: {e}"),
    };
    let Some(wakeup) = found.wakeup else {
        fail!(
            Check::WakeupEntry,
            "the MADT at {:#x} has no Multiprocessor Wakeup entry",
            found.madt
        );
    };
    if wakeup.mailbox_version != acpi::WAKEUP_MAILBOX_VERSION_RESET_VECTOR
        || usize::from(wakeup.length) != acpi::WAKEUP_ENTRY_LENGTH_V1
    {
        fail!(
            Check::WakeupEntry,
            "Multiprocessor Wakeup entry is version {}, {} bytes (want version 1, 24 bytes)",
            wakeup.mailbox_version,
            wakeup.length
        );
    }
    let reset_vector = wakeup.reset_vector.unwrap_or(0);
    if wakeup.mailbox_address != table.mailbox_address || reset_vector != table.reset_vector {
        fail!(
            Check::WakeupMatchesParkTable,
            "MADT mailbox {:#x} ResetVector {reset_vector:#x}, park table {:#x} {:#x}",
            wakeup.mailbox_address,
            table.mailbox_address,
            table.reset_vector
        );
    }
    for (name, address, header_length) in [
        ("XSDT", found.xsdt, acpi::TABLE_HEADER_LENGTH),
        ("MADT", found.madt, acpi::TABLE_HEADER_LENGTH),
    ] {
        if !map.covers(address, header_length as u64, bootinfo::MEMORY_ACPI_NVS) {
            fail!(
                Check::AcpiTablesNvs,
                "{name} {address:#x} is not ACPI NVS (type 4) in the memory map (it is {})",
                map.kind_at(address)
                    .map_or("not listed", bootinfo::memory_kind_name)
            );
        }
    }
    for &apic_id in &found.advertised {
        let state = table
            .cpus()
            .iter()
            .find(|slot| slot.apic_id == apic_id)
            .map(|slot| slot.state.load(Ordering::Acquire));
        let fine = apic_id == table.boot_apic_id || state == Some(CpuState::Parked as u32);
        if !fine {
            fail!(
                Check::AdvertisedCpusParked,
                "the MADT advertises APIC ID {apic_id}, which is {} in the park table",
                state.map_or("not listed", state_name)
            );
        }
    }
    if cmdline
        .split_ascii_whitespace()
        .any(|option| option == CLOBBER_ACPI_OPTION)
    {
        run.clobber_at = Some(wakeup.mailbox_address_field);
    }
    say!(
        "ACPI: XSDT {:#x}, MADT {:#x} (ACPI NVS): Multiprocessor Wakeup version 1, mailbox \
         {:#x}, ResetVector {reset_vector:#x}: the park table's; {} CPUs advertised, each \
         parked or the boot processor",
        found.xsdt,
        found.madt,
        wakeup.mailbox_address,
        found.advertised.len()
    );

    // ---- who is parked ----
    let parked_at_start = table.parked_count();
    let mut expected: Vec<usize, MAX_CPUS> = Vec::new();
    for (index, slot) in table.cpus().iter().enumerate() {
        if slot.state() == Some(CpuState::Parked) {
            // Cannot overflow: cpu_count <= MAX_CPUS was checked above.
            let _ = expected.push(index);
        }
    }
    run.aps_expected = expected.len() as u32;
    if parked_at_start as usize != expected.len() {
        fail!(
            Check::ParkedCount,
            "parked_count {parked_at_start}, but {} slots are in state Parked",
            expected.len()
        );
    }
    if expected.is_empty() {
        say!("no CPU of {} is parked: nothing to wake", table.cpu_count);
    } else {
        say!(
            "{} of {} CPUs parked: waking each through the mailbox, then all through the \
             doorbell",
            expected.len(),
            table.cpu_count
        );
    }
    let stale_vector = table.wake_all_vector.load(Ordering::Acquire);
    if stale_vector != 0 {
        fail!(
            Check::WakeAllVectorCleared,
            "wake_all_vector is {stale_vector:#x} at start, left from an earlier doorbell"
        );
    }
    let command = mailbox.command.load(Ordering::Acquire);
    if command != MailboxCommand::Noop as u16 {
        fail!(
            Check::MailboxIdle,
            "mailbox command is {command}, not Noop, before any wakeup"
        );
    }

    let vector = ap_entry();
    let timeout = table.tsc_hz.saturating_mul(WAIT_TIMEOUT_SECONDS);
    let mut woken = [false; MAX_CPUS];

    // ---- the HLT wait: one watcher, every other parked CPU asleep ----
    if table.flags & flags::WAIT_HLT != 0 && !expected.is_empty() {
        watcher::one_watcher(table, &expected, timeout)?;
    }
    let ring = !cmdline
        .split_ascii_whitespace()
        .any(|option| option == NO_RING_OPTION);
    if !ring && table.flags & flags::WAIT_HLT != 0 {
        say!("no wake interrupts from this kernel ({NO_RING_OPTION}): the watcher wakes every CPU");
    }

    // ---- the mailbox, one AP at a time ----
    for &index in &expected {
        let slot = slot_at(table, index);
        let proof = &AP_PROOFS[index];
        proof.reset();
        // ACPI order: APIC ID and vector first, the command last (release).
        mailbox.apic_id.store(slot.apic_id, Ordering::Relaxed);
        mailbox.wakeup_vector.store(vector, Ordering::Relaxed);
        let written = rdtsc();
        mailbox
            .command
            .store(MailboxCommand::Wakeup as u16, Ordering::Release);
        if ring {
            crate::apic::ring(slot);
        }
        if !wait_until(timeout, || {
            mailbox.command.load(Ordering::Acquire) == MailboxCommand::Noop as u16
        }) {
            fail!(
                Check::MailboxAck,
                "APIC ID {}: no acknowledgement of Wakeup (slot state {})",
                slot.apic_id,
                state_name(slot.state.load(Ordering::Acquire))
            );
        }
        if !wait_until(timeout, || proof.stamp().is_some()) {
            fail!(
                Check::MailboxProof,
                "APIC ID {}: acknowledged but never ran the AP entry",
                slot.apic_id
            );
        }
        let stamp = proof.stamp().unwrap_or(written);
        let proof_apic_id = proof.apic_id.load(Ordering::Acquire);
        if proof_apic_id != slot.apic_id {
            fail!(
                Check::ProofApicId,
                "woke APIC ID {} through the mailbox, the proof says {proof_apic_id}",
                slot.apic_id
            );
        }
        if let Err((lvt, in_service, pending)) = proof.park_timer_left_behind() {
            fail!(
                Check::ParkTimerLeftBehind,
                "APIC ID {}: woken with LVT timer {lvt:#x}, park timer or wake vector in \
                 service {in_service}, pending {pending}",
                slot.apic_id
            );
        }
        if !woken[index] {
            woken[index] = true;
            run.aps_woken += 1;
        }
        let ns = ticks_to_ns(stamp.saturating_sub(written), table.tsc_hz);
        // Cannot overflow: one entry per slot.
        let _ = run.wake_ns.push(ns);
        say!("  APIC ID {:3}: mailbox wake {ns} ns", slot.apic_id);
    }
    if table.flags & flags::WAIT_HLT != 0 && !expected.is_empty() {
        say!("every AP woke with the park timer masked, nothing pending or in service");
    }
    if !wait_until(timeout, || table.parked_count() == parked_at_start) {
        fail!(
            Check::ParkedAgainAfterMailbox,
            "after the mailbox wakeups {} of {parked_at_start} CPUs are parked again",
            table.parked_count()
        );
    }

    // ---- the doorbell: all at once ----
    for &index in &expected {
        AP_PROOFS[index].reset();
    }
    let rung = rdtsc();
    // The library rings the doorbell and writes the mailbox line parked CPUs MONITOR.
    table.wake_all(mailbox, vector);
    if ring {
        for &index in &expected {
            crate::apic::ring(slot_at(table, index));
        }
    }
    let all_stamped = || {
        expected
            .iter()
            .all(|&index| AP_PROOFS[index].stamp().is_some())
    };
    let stamped = wait_until(timeout, all_stamped);
    let mut last = rung;
    let mut ran = 0u32;
    for &index in &expected {
        let slot = slot_at(table, index);
        let Some(stamp) = AP_PROOFS[index].stamp() else {
            continue;
        };
        ran += 1;
        last = last.max(stamp);
        let proof_apic_id = AP_PROOFS[index].apic_id.load(Ordering::Acquire);
        if proof_apic_id != slot.apic_id {
            fail!(
                Check::ProofApicId,
                "slot of APIC ID {} ran the wake-all vector, the proof says {proof_apic_id}",
                slot.apic_id
            );
        }
        if let Err((lvt, in_service, pending)) = AP_PROOFS[index].park_timer_left_behind() {
            fail!(
                Check::ParkTimerLeftBehind,
                "APIC ID {}: woken with LVT timer {lvt:#x}, park timer or wake vector in \
                 service {in_service}, pending {pending}",
                slot.apic_id
            );
        }
        if !woken[index] {
            woken[index] = true;
            run.aps_woken += 1;
        }
    }
    if !stamped {
        fail!(
            Check::WakeAllProof,
            "{ran} of {} APs ran the wake-all vector",
            expected.len()
        );
    }
    run.wake_all_ns = ticks_to_ns(last - rung, table.tsc_hz);
    if !wait_until(timeout, || table.parked_count() == parked_at_start) {
        fail!(
            Check::ParkedAgainAfterWakeAll,
            "after the wake-all {} of {parked_at_start} CPUs are parked again",
            table.parked_count()
        );
    }
    if run.stale_doorbell {
        if let Some(&held) = expected.first() {
            stale_doorbell(table, mailbox, held, parked_at_start, timeout)?;
        }
    }
    match run.misbehave {
        Some(Misbehave::BadVector) => bad_vectors(table, mailbox, &expected, timeout)?,
        Some(Misbehave::KeepAps) => keep_aps(table, mailbox, &expected, timeout)?,
        Some(Misbehave::OrphanDoorbell) => orphan_doorbell(table, mailbox, &expected, timeout)?,
        _ => {}
    }
    Ok(())
}

mod misbehave;
mod watcher;
use misbehave::{bad_vectors, corrupt_table, keep_aps, orphan_doorbell, stale_doorbell};

fn state_name(raw: u32) -> &'static str {
    CpuState::from_raw(raw).map_or("unknown", CpuState::name)
}

/// Prints the summary, fills in the report and gives control back to parkboot (or, when
/// there is no way back, ends QEMU with the result).
fn finish(run: &Run, result: Result<(), Failure>) -> ! {
    let (min, median, max) = run.wake_stats();
    let mut report = KernelReport::EMPTY;
    report.aps_woken = run.aps_woken;
    report.aps_expected = run.aps_expected;
    report.wake_ns_min = min;
    report.wake_ns_median = median;
    report.wake_ns_max = max;
    report.wake_all_ns = run.wake_all_ns;
    let passed = match &result {
        Ok(()) => {
            say!(
                "iteration {}/{}: woke {} of {} APs through the mailbox (wake min/median/max \
                 {min}/{median}/{max} ns), wake-all {} ns, all parked again",
                run.iteration,
                run.iterations,
                run.wake_ns.len(),
                run.aps_expected,
                run.wake_all_ns
            );
            true
        }
        Err(failure) => {
            report.status = failure.check as u32;
            report.message = failure.message.bytes;
            say!(
                "iteration {}/{}: FAIL: check {} ({:?}): {}",
                run.iteration,
                run.iterations,
                failure.check as u32,
                failure.check,
                report.message()
            );
            false
        }
    };
    match run.misbehave {
        Some(Misbehave::ReportSignature) => report.signature = *b"GARBAGE!",
        Some(Misbehave::ReportMessage) => {
            report.status = u32::MAX;
            report.message = [0xff; MESSAGE_BYTES];
        }
        Some(Misbehave::ReportCounts) => {
            report.aps_woken = report.aps_expected + 1000;
            report.wake_ns_min = u64::MAX;
        }
        _ => {}
    }
    let mut report_address = core::ptr::addr_of_mut!(REPORT).cast::<KernelReport>();
    // SAFETY: the report lives in the kernel's .bss and only this CPU touches it.
    unsafe { report_address.write(report) };

    let Some(table) = run.table else {
        say!("no park table: cannot return to parkboot, ending QEMU");
        exit_qemu(QEMU_EXIT_FAIL);
    };
    if table.reentry_vector == 0 {
        say!(
            "the park table offers no re-entry vector: ending QEMU ({})",
            if passed { "pass" } else { "fail" }
        );
        exit_qemu(if passed {
            QEMU_EXIT_PASS
        } else {
            QEMU_EXIT_FAIL
        });
    }
    if run.misbehave == Some(Misbehave::CorruptTable) && table.cpu_count >= 2 {
        corrupt_table(table);
    }
    if run.misbehave == Some(Misbehave::ReportUnmapped) {
        report_address = UNMAPPED_REPORT as *mut KernelReport;
    }
    if let Some(field) = run.clobber_at {
        // SAFETY: the MailBoxAddress field of the MADT parkboot gave this kernel,
        // identity-mapped; a kernel may write its ACPI tables.
        unsafe { core::ptr::write_unaligned(field as *mut u64, 0) };
        say!("zeroed the MADT's MailBoxAddress at {field:#x}, as Linux does when it cannot hand CPUs back");
    }
    say!(
        "returning to parkboot at {:#x}: {:?}, report at {:#x}",
        table.reentry_vector,
        run.request,
        report_address as u64
    );
    // SAFETY: parkboot's re-entry ABI (park::reentry): 64-bit mode, interrupts off, on
    // page tables that identity-map parkboot's image (the kernel's map covers 0-4 GiB),
    // rdi = the request, rsi = the report. parkboot loads its own CR3, GDT, IDT and
    // stack before touching anything.
    unsafe {
        asm!(
            "cli",
            "jmp {vector}",
            vector = in(reg) table.reentry_vector,
            in("rdi") run.request as u64,
            in("rsi") report_address,
            options(noreturn)
        )
    }
}

/// What entry.S's exception stubs leave on the stack.
#[repr(C)]
struct ExceptionFrame {
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Vectors with a name in the log.
const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

/// Any exception on the boot processor ends the run: print it, fail QEMU.
extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    let name = EXCEPTION_NAMES
        .get(frame.vector as usize)
        .copied()
        .unwrap_or("interrupt above 31");
    say!(
        "exception: vector {} ({name}) at RIP {:#x}, error code {:#x}, CS {:#x}, RFLAGS {:#x}, \
         RSP {:#x}, SS {:#x}, CR2 {cr2:#x}",
        frame.vector,
        frame.rip,
        frame.error_code,
        frame.cs,
        frame.rflags,
        frame.rsp,
        frame.ss
    );
    exit_qemu(QEMU_EXIT_FAIL);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Serial, "testkernel: panic: {info}");
    exit_qemu(QEMU_EXIT_FAIL);
}
