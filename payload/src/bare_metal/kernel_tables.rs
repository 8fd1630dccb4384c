//! The ACPI tables kernels get, emitted afresh before every boot.
//!
//! At park time parkboot keeps a private copy of the platform's MADT (reserved memory no
//! kernel may use) and reserves the kernels' tables as ACPI NVS. Before each boot it
//! writes the RSDP, XSDT and MADT again from that copy, so whatever the previous kernel
//! wrote into them is gone, and it withholds from the MADT every CPU that is not parked
//! right now (see `acpi::cpus_to_withhold`): an OS waits without a timeout for every
//! CPU the MADT says is enabled.

use crate::arch::identity::Identity;
use crate::parking::Parked;
use core::fmt;
use parkboot::memory::{
    AllocationRequest, Lifetime, MemoryError, MemoryMap, ReportAs, FOUR_GIB, ONE_MIB,
    PAGE_SIZE as PAGE,
};
use parkboot::platform::acpi::{self, AcpiError, PristineTables, Withheld, MAX_CPUS};

/// Room for the kernels' RSDP, XSDT and MADT.
const KERNEL_TABLES_BYTES: u64 = 64 * 1024;

/// Why the kernels' tables could not be set up or emitted.
pub enum KernelTablesError {
    Memory(MemoryError),
    Acpi(AcpiError),
}

impl fmt::Display for KernelTablesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelTablesError::Memory(e) => write!(f, "{e}"),
            KernelTablesError::Acpi(e) => write!(f, "{e}"),
        }
    }
}

impl From<MemoryError> for KernelTablesError {
    fn from(e: MemoryError) -> Self {
        KernelTablesError::Memory(e)
    }
}

impl From<AcpiError> for KernelTablesError {
    fn from(e: AcpiError) -> Self {
        KernelTablesError::Acpi(e)
    }
}

/// What one emit gave the next kernel.
#[derive(Clone, Copy)]
pub struct Emitted {
    pub rsdp: u64,
    /// CPUs the MADT advertises as enabled or online-capable (the boot processor and
    /// every parked CPU).
    pub cpus_advertised: u32,
    pub cpus_withheld: u32,
}

pub struct KernelTables {
    pristine: PristineTables<'static>,
    out: &'static mut [u8],
    out_phys: u64,
    mailbox: u64,
    reset_vector: u64,
    /// What the last emit withheld, so the log says it again only when it changes.
    last_withheld: Option<heapless::Vec<Withheld, MAX_CPUS>>,
}

impl KernelTables {
    /// Copies the platform's MADT under `platform_rsdp` into reserved memory and
    /// reserves the kernels' tables (ACPI NVS, below 4 GiB).
    pub fn new(
        memory: &mut MemoryMap,
        platform_rsdp: u64,
        mailbox: u64,
        reset_vector: u64,
    ) -> Result<Self, KernelTablesError> {
        let madt_length = PristineTables::madt_length(&Identity, platform_rsdp)?;
        let store = memory.allocate(AllocationRequest {
            size: madt_length as u64,
            align: PAGE,
            min: ONE_MIB,
            max: FOUR_GIB,
            name: "pristine copy of the platform's MADT",
            report_as: ReportAs::Reserved,
            lifetime: Lifetime::Permanent,
        })?;
        let store = memory.region(store, madt_length as u64)?;
        // SAFETY: a Permanent reservation made just now for this copy, RAM the identity
        // map covers; only the pristine tables read or write it from here on.
        let store = unsafe { store.bytes_mut() };
        let pristine = PristineTables::capture(&Identity, platform_rsdp, store)?;
        let out_phys = acpi::reserve_kernel_tables(memory, KERNEL_TABLES_BYTES)?;
        let out = memory.region(out_phys, KERNEL_TABLES_BYTES)?;
        // SAFETY: a Permanent reservation made just now for the kernels' tables, RAM the
        // identity map covers; written only through `self.out` (kernels read it while
        // they run, when parkboot does not).
        let out = unsafe { out.bytes_mut() };
        Ok(KernelTables {
            pristine,
            out,
            out_phys,
            mailbox,
            reset_vector,
            last_withheld: None,
        })
    }

    /// Writes the kernels' RSDP, XSDT and MADT afresh from the pristine copy, with every
    /// CPU that is not parked right now withheld (the boot processor always stays).
    /// Logs the withheld CPUs by APIC ID, and why, whenever that list changes.
    pub fn emit(&mut self, parked: &Parked) -> Result<Emitted, AcpiError> {
        let platform_madt = acpi::parse_madt(self.pristine.madt())?;
        let table = parked.table;
        let withheld = acpi::cpus_to_withhold(&platform_madt.cpus, table.boot_apic_id, |id| {
            table
                .cpus()
                .iter()
                .find(|slot| slot.apic_id == id)
                .and_then(|slot| slot.state())
        });
        let ids: heapless::Vec<u32, MAX_CPUS> = withheld.iter().map(|w| w.apic_id).collect();
        let rewritten = self.pristine.emit(
            self.out,
            self.out_phys,
            self.mailbox,
            self.reset_vector,
            &ids,
        )?;
        let usable = platform_madt.usable_cpus().count() as u32;
        let emitted = Emitted {
            rsdp: rewritten.rsdp,
            cpus_advertised: usable.saturating_sub(withheld.len() as u32),
            cpus_withheld: withheld.len() as u32,
        };
        if self.last_withheld.as_ref() != Some(&withheld) {
            log::info!(
                "ACPI: kernels get RSDP {:#x} (XSDT {:#x}, MADT {:#x} with a Multiprocessor Wakeup entry, version 1), emitted afresh before every boot: {} CPUs advertised, {} withheld",
                rewritten.rsdp,
                rewritten.xsdt,
                rewritten.madt,
                emitted.cpus_advertised,
                emitted.cpus_withheld
            );
            for cpu in &withheld {
                log::warn!(
                    "ACPI: APIC ID {} withheld from the kernels' MADT (Enabled and Online Capable cleared): {}",
                    cpu.apic_id,
                    cpu.reason
                );
            }
            self.last_withheld = Some(withheld);
        }
        Ok(emitted)
    }
}
