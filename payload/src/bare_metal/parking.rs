//! Parking the APs: set up the park region, start every AP once with INIT-SIPI-SIPI,
//! and (self-check) wake each one through the ACPI mailbox and see it come back
//! through the ResetVector.

use crate::arch::apic::{self, LocalApic};
use crate::arch::cpu::{self, rdtsc, wait_until};
use core::mem::size_of;
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
use parkboot::memory::{
    AllocationRequest, Lifetime, MemoryMap, ReportAs, FOUR_GIB, ONE_MIB, PAGE_SIZE,
};
use parkboot::parking::layout::{
    IdRanges, InterruptGate, ParkLayout, SlotPlan, Spread, IDT_ENTRIES, PARK_GDT,
};
use parkboot::platform::acpi::{Cpu, MAX_CPUS};

/// The real-mode IVT and BIOS data area stay untouched.
const TRAMPOLINE_MIN: u64 = 0x1000;
/// INIT-SIPI-SIPI timing from the MP specification.
const INIT_TO_SIPI_US: u64 = 10_000;
const SIPI_TO_SIPI_US: u64 = 200;
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

/// The firmware page tables' pages, handed out one by one from their reservation.
struct RegionPages {
    base: u64,
    next: u64,
    end: u64,
    /// The reservation's bytes, `base..end`.
    bytes: &'static mut [u8],
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
        let offset = phys.wrapping_sub(self.base) as usize;
        let Some(page) = self
            .bytes
            .get_mut(offset..offset.saturating_add(PAGE_SIZE as usize))
        else {
            crate::arch::finish::stop(format_args!(
                "firmware page tables: page {phys:#x} is not one of theirs"
            ));
        };
        // SAFETY: a whole page of the reservation (page-aligned, as every page it hands
        // out), borrowed from `self` for as long as the table is; u64 entries are valid
        // for any bit pattern.
        unsafe { &mut *page.as_mut_ptr().cast::<[u64; ENTRIES_PER_TABLE]>() }
    }
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
        .allocate(AllocationRequest {
            size: (pages + 1) * PAGE_SIZE,
            align: PAGE_SIZE,
            min: ONE_MIB,
            max: FOUR_GIB,
            name: "firmware page tables",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Permanent,
        })
        .map_err(ParkError::Memory)?;
    let pml5 = base;
    let (pml5_page, tables) = memory
        .region(base, (pages + 1) * PAGE_SIZE)
        .and_then(|region| region.split_at(PAGE_SIZE))
        .map_err(ParkError::Memory)?;
    let tables_start = tables.start();
    let mut allocator = RegionPages {
        base: tables_start,
        next: tables_start,
        end: tables.end(),
        // SAFETY: reserved just above (Permanent) for the page tables alone, below
        // 4 GiB where the bootstrap map covers it; written only through the allocator.
        bytes: unsafe { tables.bytes_mut() },
    };
    let pml4 =
        paging::build_identity_map(&mut allocator, end, options).map_err(ParkError::Paging)?;
    // SAFETY: the PML5 page, reserved above, apart from the tables.
    let pml5_bytes = unsafe { pml5_page.bytes_mut() };
    pml5_bytes.fill(0);
    if let Some(entry) = pml5_bytes.first_chunk_mut::<8>() {
        *entry = (pml4 | paging::TABLE_FLAGS.bits()).to_le_bytes();
    }
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
                "park timer: local-APIC timer at {} kHz, period {} us on one watcher CPU \
                 (the others sleep until it wakes them, and look on their own every {} periods)",
                hz / 1000,
                config.park_timer_us,
                park::code::SLEEPER_BACKSTOP_PERIODS
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
        .allocate(AllocationRequest {
            size: PAGE_SIZE,
            align: PAGE_SIZE,
            min: ONE_MIB,
            max: FOUR_GIB,
            name: "ACPI wakeup mailbox",
            report_as: ReportAs::AcpiNvs,
            lifetime: Lifetime::Permanent,
        })
        .map_err(ParkError::Memory)?;
    let base = memory
        .allocate(AllocationRequest {
            size,
            align: PAGE_SIZE,
            min: ONE_MIB,
            max: FOUR_GIB,
            name: "park region",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Permanent,
        })
        .map_err(ParkError::Memory)?;
    let trampoline_page = memory
        .allocate(AllocationRequest {
            size: PAGE_SIZE,
            align: PAGE_SIZE,
            min: TRAMPOLINE_MIN,
            max: ONE_MIB,
            name: "AP start trampoline",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Permanent,
        })
        .map_err(ParkError::Memory)?;
    let layout = ParkLayout::new(base, table_bytes, code_bytes, slot_count as u64);
    // Each range as a region of its reservation, the park region cut along its layout.
    let region = |start, len| memory.region(start, len).map_err(ParkError::Memory);
    let mailbox_region = region(mailbox_address, PAGE_SIZE)?;
    let park_region = region(base, layout.size)?;
    let trampoline_region = region(trampoline_page, PAGE_SIZE)?;
    let part = |start, len| park_region.sub_at(start, len).map_err(ParkError::Memory);
    let table_region = part(layout.table, table_bytes)?;
    let code_region = part(layout.code, code_bytes)?;
    let gdt_region = part(layout.gdt, (PARK_GDT.len() * 8) as u64)?;
    let idt_region = part(layout.idt, (IDT_ENTRIES * 16) as u64)?;
    let data_region = code_region
        .sub(park_code.data as u64, size_of::<ParkCodeData>() as u64)
        .map_err(ParkError::Memory)?;
    // SAFETY: for every region of this function: reserved above (Permanent) for the
    // park region, the mailbox and the trampoline, below 4 GiB where the identity map
    // covers them; no AP has been started, so nothing else reads or writes them; each
    // slice lives only while its part is filled, except the table's and the mailbox's,
    // which `Parked` keeps, and nothing writes those but through it.
    unsafe { park_region.bytes_mut() }.fill(0);
    // SAFETY: as above.
    let mailbox_bytes: &'static mut [u8] = unsafe { mailbox_region.bytes_mut() };
    mailbox_bytes.fill(0);

    // GDT and IDT of parked CPUs.
    let code_base = layout.code;
    // SAFETY: as above.
    let gdt = unsafe { gdt_region.bytes_mut() };
    for (descriptor, bytes) in PARK_GDT.iter().zip(gdt.chunks_exact_mut(8)) {
        bytes.copy_from_slice(&descriptor.to_le_bytes());
    }
    // SAFETY: as above.
    let idt_bytes = unsafe { idt_region.bytes_mut() };
    // SAFETY: InterruptGate is plain integers, valid for any bit pattern (all zero here).
    let (_, idt, _) = unsafe { idt_bytes.align_to_mut::<InterruptGate>() };
    if idt.len() != IDT_ENTRIES {
        crate::arch::finish::stop(format_args!(
            "park region: the IDT at {:#x} holds {} gates, not {}",
            layout.idt,
            idt.len(),
            IDT_ENTRIES
        ));
    }
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
            code::WAKE_VECTOR if wait.mode == WaitMode::Hlt => park_code.wake_interrupt_handler,
            _ if wait.mode == WaitMode::Hlt => park_code.interrupt_handler,
            _ => park_code.unexpected_vector_stub,
        };
        *gate = InterruptGate::new(code_base + handler as u64, code::SEL_CODE64);
    }
    // SAFETY: as above; the code's slice ends here, before its data block's begins.
    unsafe { code_region.bytes_mut() }.copy_from_slice(park_code.blob.bytes);
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
    // SAFETY: as above.
    let data_bytes = unsafe { data_region.bytes_mut() };
    // SAFETY: `data_bytes` holds exactly one ParkCodeData; written unaligned.
    unsafe {
        data_bytes
            .as_mut_ptr()
            .cast::<ParkCodeData>()
            .write_unaligned(data)
    };

    // The park table.
    // SAFETY: as above.
    let table_memory: *mut u8 = unsafe { table_region.bytes_mut() }.as_mut_ptr();
    // SAFETY: zeroed memory at the page-aligned start of the table's `table_bytes`
    // (at least a header), valid for ParkTable (all-zero is a valid bit pattern for its
    // integer and atomic fields); the slots below lie after the header.
    let table: &'static mut ParkTable = unsafe { &mut *table_memory.cast::<ParkTable>() };
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
    for (index, cpu) in plan.slotted.iter().filter_map(|&i| cpus.get(i)).enumerate() {
        // SAFETY: slot `index` < slot_count lies in the zeroed table memory reserved
        // above (table_bytes), 128-byte aligned; nothing else references it yet.
        let slot = unsafe {
            &mut *table_memory
                .add(PARK_TABLE_HEADER_SIZE + index * table.slot_size as usize)
                .cast::<CpuSlot>()
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
    // SAFETY: as above.
    let page = unsafe { trampoline_region.bytes_mut() };
    page.fill(0);
    let fields: [(usize, &[u8]); 7] = [
        (0, trampoline.blob.bytes),
        (
            trampoline.gdt_pointer,
            &((PARK_GDT.len() * 8 - 1) as u16).to_le_bytes(),
        ),
        (
            trampoline.gdt_pointer + 2,
            &(layout.gdt as u32).to_le_bytes(),
        ),
        (trampoline.cr3, &(map.pml4 as u32).to_le_bytes()),
        (
            trampoline.far32,
            &((trampoline_page + trampoline.protected_mode as u64) as u32).to_le_bytes(),
        ),
        (
            trampoline.far64,
            &((trampoline_page + trampoline.long_mode as u64) as u32).to_le_bytes(),
        ),
        (
            trampoline.entry64,
            &(code_base + park_code.ap_start as u64).to_le_bytes(),
        ),
    ];
    for (at, bytes) in fields {
        let Some(field) = page.get_mut(at..at + bytes.len()) else {
            crate::arch::finish::stop(format_args!(
                "AP start trampoline: {} bytes at {at:#x} lie outside its page",
                bytes.len()
            ));
        };
        field.copy_from_slice(bytes);
    }

    let mut parked = Parked {
        table,
        // SAFETY: the mailbox page, reserved and zeroed (Noop) above, page-aligned and
        // larger than the mailbox.
        mailbox: unsafe { &*mailbox_bytes.as_ptr().cast::<WakeupMailbox>() },
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
