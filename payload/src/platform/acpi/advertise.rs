//! Which CPUs the kernels' MADT advertises: the boot processor and every CPU parked
//! right now. Every other CPU the platform lists as usable is withheld (its Enabled and
//! Online Capable flags cleared by [`super::madt_with_wakeup`]), because an OS that sees
//! a CPU enabled wakes it through the mailbox and waits for it without a timeout
//! (Linux's `acpi_wakeup_cpu`): a CPU that is not in the park loop would hang the boot.

use core::fmt;

use heapless::Vec;
use park::table::CpuState;

use super::{Cpu, MAX_CPUS};

/// Why a CPU is left out of the kernels' MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithheldReason {
    /// Never reached the park loop after INIT-SIPI-SIPI.
    NotResponding,
    /// Took an unexpected exception in parkboot's code and stopped for good.
    Faulted,
    /// A previous kernel woke it and it has not come back through the ResetVector.
    NotBack,
    /// The park table has no slot for it, so it was never started.
    NoSlot,
    /// Its slot is in a state in which it cannot answer the mailbox (the state named).
    Other(CpuState),
}

impl fmt::Display for WithheldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WithheldReason::NotResponding => {
                write!(f, "not responding (never reached the park loop)")
            }
            WithheldReason::Faulted => write!(f, "faulted while parked"),
            WithheldReason::NotBack => write!(
                f,
                "running (did not come back through the ResetVector after the previous kernel)"
            ),
            WithheldReason::NoSlot => write!(f, "no park table slot (never started)"),
            WithheldReason::Other(state) => write!(f, "{} (not parked)", state.name()),
        }
    }
}

/// One CPU left out of the kernels' MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Withheld {
    pub apic_id: u32,
    pub reason: WithheldReason,
}

/// The CPUs of `cpus` (the platform's MADT) that the kernels' MADT must not advertise:
/// every usable CPU except the boot processor whose state (`state_of(apic_id)`, `None`
/// when the park table has no slot for it) is not [`CpuState::Parked`]. CPUs the
/// platform already lists as neither enabled nor online-capable are not in the list:
/// their flags say so already.
pub fn cpus_to_withhold(
    cpus: &[Cpu],
    boot_apic_id: u32,
    state_of: impl Fn(u32) -> Option<CpuState>,
) -> Vec<Withheld, MAX_CPUS> {
    let mut withheld = Vec::new();
    for cpu in cpus
        .iter()
        .filter(|cpu| cpu.is_usable() && cpu.apic_id != boot_apic_id)
    {
        let reason = match state_of(cpu.apic_id) {
            Some(CpuState::Parked) => continue,
            Some(CpuState::NotResponding) => WithheldReason::NotResponding,
            Some(CpuState::Faulted) => WithheldReason::Faulted,
            Some(CpuState::Running) => WithheldReason::NotBack,
            Some(state) => WithheldReason::Other(state),
            None => WithheldReason::NoSlot,
        };
        // `cpus` holds at most MAX_CPUS entries, so the list cannot overflow.
        let _ = withheld.push(Withheld {
            apic_id: cpu.apic_id,
            reason,
        });
    }
    withheld
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(apic_id: u32, enabled: bool, online_capable: bool) -> Cpu {
        Cpu {
            apic_id,
            processor_uid: apic_id,
            enabled,
            online_capable,
            from_x2apic_entry: apic_id > 254,
        }
    }

    #[test]
    fn only_usable_aps_that_are_not_parked_are_withheld() {
        let cpus = [
            cpu(0, true, false),
            cpu(1, true, false),
            cpu(2, true, false),
            cpu(3, false, true),
            cpu(4, false, false),
            cpu(5, true, false),
            cpu(6, true, false),
            cpu(300, true, false),
            cpu(7, true, false),
        ];
        let state_of = |id| match id {
            0 => Some(CpuState::BootProcessor),
            1 | 3 => Some(CpuState::Parked),
            2 => Some(CpuState::NotResponding),
            4 => Some(CpuState::Disabled),
            5 => Some(CpuState::Faulted),
            6 => Some(CpuState::Running),
            7 => Some(CpuState::Starting),
            _ => None,
        };
        let withheld = cpus_to_withhold(&cpus, 0, state_of);
        let expected = [
            (2, WithheldReason::NotResponding),
            (5, WithheldReason::Faulted),
            (6, WithheldReason::NotBack),
            (300, WithheldReason::NoSlot),
            (7, WithheldReason::Other(CpuState::Starting)),
        ];
        let found: std::vec::Vec<(u32, WithheldReason)> =
            withheld.iter().map(|w| (w.apic_id, w.reason)).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn the_boot_processor_stays_advertised_whatever_its_slot_says() {
        let cpus = [cpu(2, true, false), cpu(0, true, false)];
        let withheld = cpus_to_withhold(&cpus, 2, |id| (id == 0).then_some(CpuState::Parked));
        assert!(withheld.is_empty(), "{withheld:?}");
    }

    #[test]
    fn every_reason_names_itself() {
        let text = |reason: WithheldReason| std::format!("{reason}");
        assert!(text(WithheldReason::NotResponding).contains("never reached the park loop"));
        assert!(text(WithheldReason::NotBack).contains("ResetVector"));
        assert!(text(WithheldReason::Faulted).contains("faulted"));
        assert!(text(WithheldReason::NoSlot).contains("slot"));
        assert!(text(WithheldReason::Other(CpuState::Starting)).contains("starting"));
    }
}
