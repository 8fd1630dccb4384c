//! What parkboot checks when a kernel gives the boot processor back, because a kernel
//! may have misbehaved: CPUs it never handed back, a park table it wrote into, wakeup
//! vectors the parked CPUs refused, a mailbox command left pending. Each finding is
//! logged by APIC ID (and field); the table is repaired from parkboot's own copy.

use crate::arch::cpu;
use crate::parking::Parked;
use core::sync::atomic::Ordering;
use park::integrity::verify_and_repair;
use park::table::{CpuState, ParkTable, MAX_PARKED_CPUS};
use park::MailboxCommand;

/// How long a parked CPU gets to answer the mailbox Test command.
const PROBE_TIMEOUT_NS: u64 = 1_000_000_000;

/// What parkboot noted about each slot before it booted a kernel.
#[derive(Clone, Copy)]
pub struct BeforeBoot {
    states: [u32; MAX_PARKED_CPUS],
    refused: [u32; MAX_PARKED_CPUS],
}

impl BeforeBoot {
    pub fn of(parked: &Parked) -> Self {
        let mut before = BeforeBoot {
            states: [0; MAX_PARKED_CPUS],
            refused: [0; MAX_PARKED_CPUS],
        };
        let records = before.states.iter_mut().zip(before.refused.iter_mut());
        for ((state, refused), slot) in records.zip(parked.table.cpus().iter()) {
            *state = slot.state.load(Ordering::Acquire);
            *refused = slot.refused_count.load(Ordering::Acquire);
        }
        before
    }
}

/// What the checks found.
#[derive(Default)]
pub struct Findings {
    /// Owned table fields (and the checksum) that differed from parkboot's copy.
    pub table_damage: usize,
    /// Slots whose state or the parked count was false, corrected.
    pub states_corrected: usize,
    /// APs that were parked when the kernel was booted and are not parked now.
    pub not_back: usize,
}

/// Sends the mailbox Test command to `apic_id` and waits (bounded) for the Noop: only
/// a CPU in the park loop answers it.
fn answers_test(parked: &Parked, apic_id: u32) -> bool {
    let mailbox = parked.mailbox;
    mailbox.apic_id.store(apic_id, Ordering::Relaxed);
    mailbox.wakeup_vector.store(0, Ordering::Relaxed);
    mailbox
        .command
        .store(MailboxCommand::Test as u16, Ordering::Release);
    let answered = cpu::wait_until(cpu::deadline_in_ns(PROBE_TIMEOUT_NS), || {
        mailbox.command.load(Ordering::Acquire) == MailboxCommand::Noop as u16
    })
    .is_some();
    if !answered {
        // Nobody took it: withdraw it, so no CPU acts on it later.
        mailbox
            .command
            .store(MailboxCommand::Noop as u16, Ordering::Release);
    }
    answered
}

/// Runs every check after a kernel re-entered and the wait for returning APs is over.
/// `kernel` names the entry and iteration in the log.
pub fn inspect(parked: &Parked, before: &BeforeBoot, kernel: core::fmt::Arguments<'_>) -> Findings {
    let mut findings = Findings::default();
    let table: &ParkTable = parked.table;

    // 1. The fields only parkboot writes, against its private copy.
    // SAFETY: the table parkboot built from these copies; parked CPUs only read the
    // owned fields, and no kernel runs now.
    findings.table_damage = unsafe {
        verify_and_repair(
            table as *const ParkTable as *mut ParkTable,
            &parked.owned_header,
            &parked.owned_slots,
            |damage| {
                log::error!("{kernel}: the kernel wrote into the park table: {damage}; repaired from parkboot's copy")
            },
        )
    };

    // 2. A mailbox command the kernel left pending (no CPU took it in the second the
    // returning CPUs got): the next kernel must find the mailbox idle.
    let command = parked.mailbox.command.load(Ordering::Acquire);
    if command != MailboxCommand::Noop as u16 {
        log::error!(
            "{kernel}: the kernel left mailbox command {} for APIC ID {} pending; cleared",
            command,
            parked.mailbox.apic_id.load(Ordering::Acquire)
        );
        parked
            .mailbox
            .command
            .store(MailboxCommand::Noop as u16, Ordering::Release);
    }

    // 3. Slot states: the boot processor's is known; an unknown value, or Parked where
    // the CPU was not parked when the kernel started (or anywhere, once something is
    // found wrong), is believed only if the CPU answers the mailbox Test.
    let slots = table.cpus();
    let parked_states = slots
        .iter()
        .filter(|s| s.state() == Some(CpuState::Parked))
        .count() as u32;
    let suspicious = findings.table_damage > 0 || parked_states != table.parked_count();
    for (index, slot) in slots.iter().enumerate() {
        let raw = slot.state.load(Ordering::Acquire);
        let state = CpuState::from_raw(raw);
        if slot.apic_id == table.boot_apic_id {
            if state != Some(CpuState::BootProcessor) {
                log::error!(
                    "{kernel}: slot of APIC ID {} (the boot processor) says state {}; repaired",
                    slot.apic_id,
                    raw
                );
                slot.state
                    .store(CpuState::BootProcessor as u32, Ordering::Release);
                findings.states_corrected += 1;
            }
            continue;
        }
        let was_parked = before.states.get(index).copied() == Some(CpuState::Parked as u32);
        let verify = match state {
            None => true,
            Some(CpuState::Parked) => suspicious || !was_parked,
            Some(_) => false,
        };
        if !verify {
            continue;
        }
        if answers_test(parked, slot.apic_id) {
            if state != Some(CpuState::Parked) {
                log::error!(
                    "{kernel}: slot of APIC ID {} says state {}, but the CPU answers in the park loop: marked parked",
                    slot.apic_id,
                    raw
                );
                slot.state.store(CpuState::Parked as u32, Ordering::Release);
                findings.states_corrected += 1;
            }
        } else {
            log::error!(
                "{kernel}: slot of APIC ID {} says {}, but the CPU does not answer the mailbox: marked not responding, and kernels do not get it",
                slot.apic_id,
                state.map_or("an unknown state", CpuState::name)
            );
            slot.state
                .store(CpuState::NotResponding as u32, Ordering::Release);
            findings.states_corrected += 1;
        }
    }
    let parked_now = slots
        .iter()
        .filter(|s| s.state() == Some(CpuState::Parked))
        .count() as u32;
    let count = table.parked_count();
    if count != parked_now {
        log::error!(
            "{kernel}: parked_count is {count}, but {parked_now} CPUs are parked; corrected"
        );
        table.parked_count.store(parked_now, Ordering::Release);
        findings.states_corrected += 1;
    }

    // 4. Wakeup vectors the parked CPUs refused (0, non-canonical, beyond the map).
    for (index, slot) in slots.iter().enumerate() {
        let refused = slot
            .refused_count
            .load(Ordering::Acquire)
            .wrapping_sub(before.refused.get(index).copied().unwrap_or(0));
        if refused > 0 {
            log::warn!(
                "{kernel}: APIC ID {} refused {} wakeup vectors (the last {:#x}: zero, not canonical or beyond parkboot's identity map) and stayed parked",
                slot.apic_id,
                refused,
                slot.refused_vector.load(Ordering::Acquire)
            );
        }
    }

    // 5. APs the kernel was given and did not hand back.
    for (index, slot) in slots.iter().enumerate() {
        if before.states.get(index).copied() == Some(CpuState::Parked as u32)
            && slot.state() == Some(CpuState::Running)
        {
            findings.not_back += 1;
            log::error!(
                "{kernel}: APIC ID {} did not come back through the ResetVector: it may still run in the kernel's memory, so that memory stays reserved and later kernels' MADT withholds the CPU",
                slot.apic_id
            );
        }
    }
    findings
}

/// CPUs in state Running now: given to a kernel and never handed back.
pub fn running(table: &ParkTable) -> usize {
    table
        .cpus()
        .iter()
        .filter(|s| s.state() == Some(CpuState::Running))
        .count()
}
