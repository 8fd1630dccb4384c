//! Parking the APs: set up the park region, start every AP once with INIT-SIPI-SIPI,
//! and (self-check) wake each one through the ACPI mailbox and see it come back
//! through the ResetVector.

use crate::arch::apic::{self, LocalApic};
use crate::arch::cpu::{self, rdtsc, wait_until};
use core::sync::atomic::Ordering;
use park::code::{self, ParkCodeData};
use park::integrity::{OwnedFields, SlotOwned};
use park::table::{
    flags, table_bytes, CpuSlot, CpuState, ParkTable, MAX_PARKED_CPUS, PARK_TABLE_HEADER_SIZE,
    PARK_TABLE_SIGNATURE, PARK_TABLE_VERSION,
};
use park::{MailboxCommand, WakeupMailbox};
use parkboot::config::{park_timer_initial_count, Config, ParkWait, WaitMode};
use parkboot::memory::paging::{self, MapOptions, PageAllocator, ENTRIES_PER_TABLE};
use parkboot::memory::{Lifetime, MemoryMap, ReportAs, FOUR_GIB, ONE_MIB, PAGE_SIZE};
use parkboot::parking::layout::{
    IdRanges, InterruptGate, ParkLayout, SlotPlan, Spread, IDT_ENTRIES, PARK_GDT,
};
use parkboot::platform::acpi::{Cpu, MAX_CPUS};

/// The real-mode IVT and BIOS data area stay untouched.
const TRAMPOLINE_MIN: u64 = 0x1000;
/// INIT-SIPI-SIPI timing from the MP specification.
const INIT_TO_SIPI_US: u64 = 10_000;
const SIPI_TO_SIPI_US: u64 = 200;
const PTE_PRESENT_WRITABLE: u64 = 0b11;
const SIPI_VECTOR_SHIFT: u64 = 12;
/// How long the self-check waits for one AP to answer one wakeup.
const WAKE_TIMEOUT_US: u64 = 1_000_000;

/// Everything parked, and where.
pub struct Parked {
    pub table: &'static ParkTable,
    pub mailbox: &'static WakeupMailbox,
    pub layout: ParkLayout,
    pub mailbox_address: u64,
    pub reset_vector: u64,
    pub self_check_vector: u64,
    pub trampoline: u64,
    /// APs the MADT lists (usable ones) that have a slot, and how many reached the
    /// park loop.
    pub aps_expected: u32,
    pub aps_parked: u32,
    /// Time from the first INIT to the last AP parked.
    pub park_all_ns: u64,
    /// TSC when the first INIT was sent.
    pub init_tsc: u64,
    /// APIC IDs of the usable CPUs the MADT lists beyond the park table's room, in
    /// MADT order: never started, so never parked. They have no slot
    /// (`table.slot_for_apic_id` is `None`), the table counts them in
    /// `cpus_beyond_table`, and the kernels' MADT must not advertise them.
    pub beyond_table: heapless::Vec<u32, MAX_CPUS>,
    /// parkboot's private copy of the table fields only it writes (header and each
    /// slot's APIC ID and stack): what it verifies the table against, and repairs it
    /// from, whenever a kernel gives control back.
    pub owned_header: OwnedFields,
    pub owned_slots: heapless::Vec<SlotOwned, MAX_PARKED_CPUS>,
}

#[derive(Debug)]
pub enum ParkError {
    Memory(parkboot::memory::MemoryError),
    Paging(paging::PagingError),
    NeedX2Apic(u32),
}

impl core::fmt::Display for ParkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParkError::Memory(e) => write!(f, "park region: {e}"),
            ParkError::Paging(e) => write!(f, "firmware page tables: {e}"),
            ParkError::NeedX2Apic(id) => write!(
                f,
                "APIC ID {id} needs x2APIC mode, which this CPU does not offer"
            ),
        }
    }
}

struct RegionPages {
    next: u64,
    end: u64,
}

impl PageAllocator for RegionPages {
    fn allocate_page(&mut self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        let page = self.next;
        self.next += PAGE_SIZE;
        Some(page)
    }

    fn page_mut(&mut self, phys: u64) -> &mut [u64; ENTRIES_PER_TABLE] {
        // SAFETY: pages of the park region, identity-mapped and owned by parkboot.
        unsafe { &mut *(phys as *mut [u64; ENTRIES_PER_TABLE]) }
    }
}

/// # Safety: `addr..addr+len` is memory parkboot reserved.
unsafe fn zero(addr: u64, len: u64) {
    // SAFETY: the caller guarantees `addr..addr+len` is reserved, identity-mapped memory.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len as usize) };
}

/// Builds the firmware page tables and the park region, then parks every usable AP.
/// parkboot's own identity map of all RAM and the MMIO below 4 GiB: the map the boot
/// processor runs on from early boot, and the one parked CPUs use.
pub struct FirmwareMap {
    pub pml4: u64,
    /// A PML5 whose first entry points at the PML4, for CPUs handed back with 5-level
    /// paging on.
    pub pml5: u64,
    pub end: u64,
    pub gigabyte_pages: bool,
    pub pages: u64,
}

/// Builds the firmware map in reserved memory below 4 GiB (the AP trampoline loads
/// CR3 with a 32-bit value) and switches the boot processor to it.
pub fn build_firmware_map(memory: &mut MemoryMap, end: u64) -> Result<FirmwareMap, ParkError> {
    let options = MapOptions {
        gigabyte_pages: cpu::has_gigabyte_pages(),
    };
    let pages = paging::pages_needed(end, options) as u64;
    let base = memory
        .allocate(
            (pages + 1) * PAGE_SIZE,
            PAGE_SIZE,
            ONE_MIB,
            FOUR_GIB,
            "firmware page tables",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .map_err(ParkError::Memory)?;
    let pml5 = base;
    // SAFETY: just reserved.
    unsafe { zero(pml5, PAGE_SIZE) };
    let mut allocator = RegionPages {
        next: base + PAGE_SIZE,
        end: base + (pages + 1) * PAGE_SIZE,
    };
    let pml4 =
        paging::build_identity_map(&mut allocator, end, options).map_err(ParkError::Paging)?;
    // SAFETY: the PML5 page is reserved above.
    unsafe { *(pml5 as *mut u64) = pml4 | PTE_PRESENT_WRITABLE };
    // SAFETY: the new map covers everything the bootstrap map did (0-4 GiB) and more.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) pml4) };
    Ok(FirmwareMap {
        pml4,
        pml5,
        end,
        gigabyte_pages: options.gigabyte_pages,
        pages,
    })
}

/// How parked CPUs wait, as the boot processor chose it.
#[derive(Clone, Copy, Debug)]
pub struct ParkWaitSetup {
    pub mode: WaitMode,
    /// For `WaitMode::Hlt`: the park timer's initial count for one period.
    pub timer_initial_count: u32,
    pub period_us: u32,
}

impl ParkWaitSetup {
    fn flags(&self) -> u32 {
        match self.mode {
            WaitMode::Mwait => flags::WAIT_MWAIT,
            WaitMode::Hlt => flags::WAIT_HLT,
            WaitMode::Pause => 0,
        }
    }
}

/// Chooses the park wait from the configuration and the boot processor's CPUID, and
/// for the HLT wait measures the local-APIC timer to get one period's count.
pub fn choose_park_wait(config: &Config) -> ParkWaitSetup {
    let wants_timer = config.park_wait != ParkWait::Pause;
    let timer_hz = if wants_timer {
        LocalApic::current().measure_timer_hz()
    } else {
        None
    };
    let mode = config
        .park_wait
        .resolve(cpu::has_monitor_mwait(), timer_hz.is_some());
    if config.park_wait == ParkWait::Hlt && mode != WaitMode::Hlt {
        log::warn!(
            "park_wait = hlt: the local-APIC timer does not count; parked CPUs wait with PAUSE"
        );
    }
    let timer_initial_count = match (mode, timer_hz) {
        (WaitMode::Hlt, Some(hz)) => {
            log::info!(
                "park timer: local-APIC timer at {} kHz, period {} us",
                hz / 1000,
                config.park_timer_us
            );
            park_timer_initial_count(hz, config.park_timer_us)
        }
        _ => 0,
    };
    ParkWaitSetup {
        mode,
        timer_initial_count,
        period_us: config.park_timer_us,
    }
}

impl core::fmt::Display for ParkWaitSetup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.mode {
            WaitMode::Mwait => write!(f, "MONITOR/MWAIT"),
            WaitMode::Hlt => write!(f, "HLT and a {} us local-APIC timer", self.period_us),
            WaitMode::Pause => write!(f, "PAUSE"),
        }
    }
}

pub fn park_all(
    memory: &mut MemoryMap,
    map: &FirmwareMap,
    cpus: &[Cpu],
    boot_apic_id: u32,
    ap_timeout_ms: u32,
    wait: ParkWaitSetup,
    x2apic: bool,
) -> Result<Parked, ParkError> {
    let plan = SlotPlan::new(cpus, boot_apic_id, MAX_PARKED_CPUS);
    let slot_count = plan.slotted.len();
    if !plan.beyond_table.is_empty() {
        log::warn!(
            "the MADT lists {} CPUs, the park table has {} slots: {} CPUs beyond it are not \
             started and not parked, and kernels do not get them: APIC IDs {}",
            cpus.len(),
            MAX_PARKED_CPUS,
            plan.beyond_table.len(),
            IdRanges(&plan.beyond_table)
        );
    }
    let park_code = code::park_code();
    let trampoline = code::trampoline();
    let table_bytes = table_bytes(slot_count) as u64;
    let code_bytes = park_code.blob.bytes.len() as u64;
    let size = ParkLayout::size_for(table_bytes, code_bytes, slot_count as u64);

    let mailbox_address = memory
        .allocate(
            PAGE_SIZE,
            PAGE_SIZE,
            ONE_MIB,
            FOUR_GIB,
            "ACPI wakeup mailbox",
            ReportAs::AcpiNvs,
            Lifetime::Permanent,
        )
        .map_err(ParkError::Memory)?;
    let base = memory
        .allocate(
            size,
            PAGE_SIZE,
            ONE_MIB,
            FOUR_GIB,
            "park region",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .map_err(ParkError::Memory)?;
    let trampoline_page = memory
        .allocate(
            PAGE_SIZE,
            PAGE_SIZE,
            TRAMPOLINE_MIN,
            ONE_MIB,
            "AP start trampoline",
            ReportAs::Reserved,
            Lifetime::Permanent,
        )
        .map_err(ParkError::Memory)?;
    let layout = ParkLayout::new(base, table_bytes, code_bytes, slot_count as u64);
    // SAFETY: all three ranges were just reserved for parkboot.
    unsafe {
        zero(mailbox_address, PAGE_SIZE);
        zero(base, layout.size);
        zero(trampoline_page, PAGE_SIZE);
    }

    // GDT and IDT of parked CPUs.
    let code_base = layout.code;
    // SAFETY: GDT and IDT pages are in the park region.
    unsafe {
        core::ptr::copy_nonoverlapping(PARK_GDT.as_ptr(), layout.gdt as *mut u64, PARK_GDT.len());
        let idt = core::slice::from_raw_parts_mut(layout.idt as *mut InterruptGate, IDT_ENTRIES);
        for (vector, gate) in idt.iter_mut().enumerate() {
            let handler = match vector {
                code::NMI_VECTOR => park_code.nmi_handler,
                code::MACHINE_CHECK_VECTOR => park_code.machine_check_handler,
                v if v < code::FAULT_STUB_VECTORS => {
                    park_code.fault_stubs + v * code::FAULT_STUB_STRIDE
                }
                // Interrupts are on during the HLT wait: the park timer's and any
                // other external interrupt are ended and the CPU waits on. (IF stays
                // 0 in the other waits: a vector above 31 there is a fault.)
                _ if wait.mode == WaitMode::Hlt => park_code.interrupt_handler,
                _ => park_code.unexpected_vector_stub,
            };
            *gate = InterruptGate::new(code_base + handler as u64, code::SEL_CODE64);
        }
        core::ptr::copy_nonoverlapping(
            park_code.blob.bytes.as_ptr(),
            code_base as *mut u8,
            park_code.blob.bytes.len(),
        );
        let data = ParkCodeData::new(
            map.pml4,
            map.pml5,
            layout.table,
            mailbox_address,
            (wait.flags(), wait.timer_initial_count),
            slot_count as u32,
            map.end,
            (layout.gdt, (PARK_GDT.len() * 8 - 1) as u16),
            (layout.idt, (IDT_ENTRIES * 16 - 1) as u16),
        );
        core::ptr::write(
            (code_base + park_code.data as u64) as *mut ParkCodeData,
            data,
        );
    }

    // The park table.
    // SAFETY: zeroed memory in the park region, valid for ParkTable (all-zero is a
    // valid bit pattern for its integer and atomic fields).
    let table: &'static mut ParkTable = unsafe { &mut *(layout.table as *mut ParkTable) };
    table.signature = PARK_TABLE_SIGNATURE;
    table.version = PARK_TABLE_VERSION;
    table.table_size = table_bytes as u32;
    table.slots_offset = PARK_TABLE_HEADER_SIZE as u32;
    table.slot_size = core::mem::size_of::<CpuSlot>() as u32;
    table.slot_count = slot_count as u32;
    table.cpu_count = slot_count as u32;
    table.cpus_beyond_table = plan.beyond_table.len() as u32;
    table.boot_apic_id = boot_apic_id;
    table.flags = flags::CHECKSUM | wait.flags();
    table.mailbox_address = mailbox_address;
    table.reset_vector = code_base + park_code.reset_vector as u64;
    table.reentry_vector = crate::arch::reentry_vector();
    table.tsc_hz = cpu::tsc_hz();
    table.park_region_base = layout.base;
    table.park_region_size = layout.size;
    let mut aps_expected = 0;
    let mut owned_slots = heapless::Vec::new();
    for (index, cpu) in plan.slotted.iter().map(|&i| &cpus[i]).enumerate() {
        // SAFETY: slot `index` < slot_count lies in the zeroed table memory reserved
        // above (table_bytes), 128-byte aligned; nothing else references it yet.
        let slot = unsafe {
            &mut *((layout.table as usize
                + PARK_TABLE_HEADER_SIZE
                + index * table.slot_size as usize) as *mut CpuSlot)
        };
        slot.apic_id = cpu.apic_id;
        slot.stack_top = layout.stack_top(index as u64);
        // Cannot overflow: slot_count <= MAX_PARKED_CPUS.
        let _ = owned_slots.push(SlotOwned {
            apic_id: slot.apic_id,
            stack_top: slot.stack_top,
        });
        let state = if cpu.apic_id == boot_apic_id {
            CpuState::BootProcessor
        } else if !cpu.is_usable() {
            CpuState::Disabled
        } else {
            aps_expected += 1;
            CpuState::Starting
        };
        slot.state.store(state as u32, Ordering::Relaxed);
    }
    // parkboot's private copy of what only it writes, and the checksum over it.
    let owned_header = OwnedFields::of(table);
    table.checksum = owned_header.checksum(owned_slots.iter().copied());
    let table: &'static ParkTable = table;

    // The start trampoline, below 1 MiB.
    // SAFETY: the trampoline page was reserved above.
    unsafe {
        let page = trampoline_page as *mut u8;
        core::ptr::copy_nonoverlapping(
            trampoline.blob.bytes.as_ptr(),
            page,
            trampoline.blob.bytes.len(),
        );
        let gdt_pointer = page.add(trampoline.gdt_pointer);
        core::ptr::write_unaligned(gdt_pointer as *mut u16, (PARK_GDT.len() * 8 - 1) as u16);
        core::ptr::write_unaligned(gdt_pointer.add(2) as *mut u32, layout.gdt as u32);
        core::ptr::write_unaligned(page.add(trampoline.cr3) as *mut u32, map.pml4 as u32);
        core::ptr::write_unaligned(
            page.add(trampoline.far32) as *mut u32,
            (trampoline_page + trampoline.protected_mode as u64) as u32,
        );
        core::ptr::write_unaligned(
            page.add(trampoline.far64) as *mut u32,
            (trampoline_page + trampoline.long_mode as u64) as u32,
        );
        core::ptr::write_unaligned(
            page.add(trampoline.entry64) as *mut u64,
            code_base + park_code.ap_start as u64,
        );
    }

    let mut parked = Parked {
        table,
        // SAFETY: the mailbox page is reserved and zeroed (Noop).
        mailbox: unsafe { &*(mailbox_address as *const WakeupMailbox) },
        layout,
        mailbox_address,
        reset_vector: table.reset_vector,
        self_check_vector: code_base + park_code.self_check_vector as u64,
        trampoline: trampoline_page,
        aps_expected,
        aps_parked: 0,
        park_all_ns: 0,
        init_tsc: 0,
        beyond_table: plan.beyond_table,
        owned_header,
        owned_slots,
    };
    start_aps(&mut parked, ap_timeout_ms, x2apic)?;
    Ok(parked)
}

fn starting(table: &ParkTable) -> impl Iterator<Item = &park::CpuSlot> {
    table
        .cpus()
        .iter()
        .filter(|s| s.state() == Some(CpuState::Starting))
}

/// INIT to every AP, then SIPI to every AP, then a second SIPI to those not yet
/// arrived: all in parallel, then one bounded wait for all of them.
fn start_aps(parked: &mut Parked, ap_timeout_ms: u32, x2apic: bool) -> Result<(), ParkError> {
    let table = parked.table;
    if parked.aps_expected == 0 {
        log::info!("no APs to park");
        return Ok(());
    }
    let mut local_apic = LocalApic::current();
    if x2apic && !local_apic.enable_x2apic() {
        log::warn!("x2apic = on, but this CPU does not offer x2APIC; staying in xAPIC mode");
    }
    if let Some(high) = starting(table)
        .map(|s| s.apic_id)
        .find(|&id| id > apic::XAPIC_MAX_ID)
    {
        if !local_apic.enable_x2apic() {
            return Err(ParkError::NeedX2Apic(high));
        }
    }
    let vector = (parked.trampoline >> SIPI_VECTOR_SHIFT) as u8;
    log::info!(
        "parkboot: starting APs: trampoline {:#x} (SIPI vector {:#04x}), local APIC in {}",
        parked.trampoline,
        vector,
        local_apic.mode()
    );
    let start = rdtsc();
    parked.init_tsc = start;
    for slot in starting(table) {
        if let Err(e) = local_apic.send_init(slot.apic_id) {
            log::warn!("INIT IPI to APIC ID {} stayed pending", e.apic_id);
        }
    }
    cpu::delay_us(INIT_TO_SIPI_US);
    for pass in 0..2 {
        for slot in starting(table) {
            if pass == 0 {
                slot.sipi_tsc.store(rdtsc(), Ordering::Relaxed);
            }
            if let Err(e) = local_apic.send_startup(slot.apic_id, vector) {
                log::warn!("STARTUP IPI to APIC ID {} stayed pending", e.apic_id);
            }
        }
        if pass == 0 {
            cpu::delay_us(SIPI_TO_SIPI_US);
        }
    }
    let deadline = start + cpu::ns_to_ticks(ap_timeout_ms as u64 * 1_000_000);
    wait_until(deadline, || starting(table).next().is_none());
    let mut last_arrival = start;
    for slot in table.cpus() {
        match slot.state() {
            // Compare-exchange: a CPU arriving right now sets Parked itself, and that
            // must not be overwritten.
            Some(CpuState::Starting)
                if slot
                    .state
                    .compare_exchange(
                        CpuState::Starting as u32,
                        CpuState::NotResponding as u32,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok() =>
            {
                log::error!(
                    "CPU with APIC ID {} did not reach the park loop within {} ms after INIT-SIPI-SIPI; going on without it",
                    slot.apic_id,
                    ap_timeout_ms
                );
            }
            Some(CpuState::Parked) => {
                last_arrival = last_arrival.max(slot.first_park_tsc.load(Ordering::Acquire))
            }
            _ => {}
        }
    }
    parked.aps_parked = table.parked_count();
    parked.park_all_ns = cpu::ticks_to_ns(last_arrival - start);
    Ok(())
}

/// What one self-check wakeup measured, in TSC ticks from the Wakeup command.
#[derive(Clone, Copy, Default)]
pub struct WakeSample {
    /// Until the CPU acknowledged (command back to Noop).
    pub ack: u64,
    /// Until the CPU ran the vector (its own TSC stamp).
    pub run: u64,
    /// Until the CPU was parked again, through the ResetVector.
    pub back: u64,
}

pub const MAX_ROUNDS: usize = 1000;

#[derive(Debug)]
pub enum SelfCheckError {
    NoAck {
        apic_id: u32,
        round: u32,
    },
    DidNotRun {
        apic_id: u32,
        round: u32,
    },
    DidNotReturn {
        apic_id: u32,
        round: u32,
    },
    ParkedCount {
        round: u32,
        expected: u32,
        found: u32,
    },
    WakeAll {
        expected: u32,
        woke: u32,
    },
}

impl core::fmt::Display for SelfCheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            SelfCheckError::NoAck { apic_id, round } => write!(f, "round {round}: APIC ID {apic_id} did not acknowledge the mailbox Wakeup within 1 s"),
            SelfCheckError::DidNotRun { apic_id, round } => write!(f, "round {round}: APIC ID {apic_id} acknowledged but never ran the wakeup vector"),
            SelfCheckError::DidNotReturn { apic_id, round } => write!(f, "round {round}: APIC ID {apic_id} did not come back through the ResetVector within 1 s"),
            SelfCheckError::ParkedCount { round, expected, found } => write!(f, "round {round}: parked count is {found}, expected {expected}"),
            SelfCheckError::WakeAll { expected, woke } => write!(f, "wake-all: {woke} of {expected} parked CPUs woke and came back"),
        }
    }
}

/// The self-check vector's proof protocol (see `park_self_check_vector` in park.S):
/// parkboot writes a sequence number into `kernel_scratch[0]`; the CPU answers with
/// `(sequence << 32) | APIC ID` there, and its own TSC in `kernel_scratch[1]`.
const SELF_CHECK_SEQUENCE_SHIFT: u32 = 32;

/// Asks the CPU of `slot` to prove it ran for `sequence` (nonzero).
fn request_proof(slot: &park::CpuSlot, sequence: u32) {
    slot.kernel_scratch[0].store(u64::from(sequence), Ordering::Release);
}

/// The CPU of `slot` answered `sequence`.
fn proved(slot: &park::CpuSlot, sequence: u32) -> bool {
    slot.kernel_scratch[0].load(Ordering::Acquire)
        == (u64::from(sequence) << SELF_CHECK_SEQUENCE_SHIFT) | u64::from(slot.apic_id)
}

/// Wakes one parked CPU through the ACPI mailbox into parkboot's self-check vector
/// exactly as an OS does, and returns (ack, ran, back) TSC deltas. Whether it ran is
/// decided by the sequence number it echoes, never by comparing TSCs of two CPUs; `ran`
/// uses its TSC and is a latency figure only (0 where its TSC is behind ours).
fn mailbox_round(
    parked: &Parked,
    slot: &park::CpuSlot,
    round: u32,
    sequence: u32,
) -> Result<(u64, u64, u64), SelfCheckError> {
    let apic_id = slot.apic_id;
    let mailbox = parked.mailbox;
    let returns = slot.return_count.load(Ordering::Acquire);
    let timeout = cpu::ns_to_ticks(WAKE_TIMEOUT_US * 1000);
    request_proof(slot, sequence);
    let t0 = rdtsc();
    mailbox.apic_id.store(apic_id, Ordering::Relaxed);
    mailbox
        .wakeup_vector
        .store(parked.self_check_vector, Ordering::Relaxed);
    mailbox
        .command
        .store(MailboxCommand::Wakeup as u16, Ordering::Release);
    let ack = wait_until(t0 + timeout, || {
        mailbox.command.load(Ordering::Acquire) == MailboxCommand::Noop as u16
    })
    .ok_or(SelfCheckError::NoAck { apic_id, round })?;
    wait_until(t0 + timeout, || proved(slot, sequence))
        .ok_or(SelfCheckError::DidNotRun { apic_id, round })?;
    let ran = slot.kernel_scratch[1].load(Ordering::Acquire);
    let back = wait_until(t0 + timeout, || {
        slot.return_count.load(Ordering::Acquire) > returns
            && slot.state() == Some(CpuState::Parked)
    })
    .ok_or(SelfCheckError::DidNotReturn { apic_id, round })?;
    Ok((ack - t0, ran.saturating_sub(t0), back - t0))
}

/// The boot self-check: `rounds` times, every parked AP is woken through the mailbox
/// into parkboot's self-check vector, proves it ran, and comes back through the
/// ResetVector; then all at once through the wake-all doorbell. `samples` holds
/// `rounds` entries per parked AP, AP after AP, in park table order.
pub fn self_check(
    parked: &Parked,
    rounds: u32,
    samples: &mut [WakeSample],
) -> Result<(), SelfCheckError> {
    let table = parked.table;
    let expected = table.parked_count();
    let rounds_per_ap = rounds as usize;
    let mut sequence: u32 = 0;
    for round in 1..=rounds {
        let aps = table
            .cpus()
            .iter()
            .filter(|s| s.state() == Some(CpuState::Parked));
        for (index, slot) in aps.enumerate() {
            sequence += 1;
            let (ack, run, back) = mailbox_round(parked, slot, round, sequence)?;
            if let Some(sample) = samples.get_mut(index * rounds_per_ap + round as usize - 1) {
                *sample = WakeSample { ack, run, back };
            }
        }
        let found = table.parked_count();
        if found != expected {
            return Err(SelfCheckError::ParkedCount {
                round,
                expected,
                found,
            });
        }
    }
    // Wake-all: one doorbell, every parked CPU runs the vector once and comes back.
    let before: heapless::Vec<u64, MAX_PARKED_CPUS> = table
        .cpus()
        .iter()
        .map(|s| s.return_count.load(Ordering::Acquire))
        .collect();
    sequence += 1;
    for slot in table
        .cpus()
        .iter()
        .filter(|s| s.state() == Some(CpuState::Parked))
    {
        request_proof(slot, sequence);
    }
    table.wake_all(parked.mailbox, parked.self_check_vector);
    let deadline = cpu::deadline_in_ns(WAKE_TIMEOUT_US * 1000);
    // A CPU is done when it proved it ran for this ring and came back.
    let returned = || {
        table
            .cpus()
            .iter()
            .zip(before.iter())
            .filter(|(s, b)| proved(s, sequence) && s.return_count.load(Ordering::Acquire) > **b)
            .count() as u32
    };
    if wait_until(deadline, || {
        table.parked_count() == expected && returned() == expected
    })
    .is_none()
    {
        return Err(SelfCheckError::WakeAll {
            expected,
            woke: returned(),
        });
    }
    Ok(())
}

/// Spread of one kind of sample, in nanoseconds.
pub fn spread_ns(values: impl Iterator<Item = u64>) -> Option<Spread> {
    let mut ns: heapless::Vec<u64, MAX_ROUNDS> = values.map(cpu::ticks_to_ns).collect();
    Spread::of(&mut ns)
}
