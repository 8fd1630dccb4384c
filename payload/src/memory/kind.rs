//! The memory map as the platform reports it: what each range holds.
//!
//! The platform parsers fill these from the coreboot table, PVH
//! start info or fw_cfg's e820 table; [`super::MemoryMap`] normalises them.

/// How many memory map entries parkboot keeps (coreboot on real boards stays well below).
pub const MAX_MEMORY_REGIONS: usize = 128;

/// What a memory range holds, as the firmware before parkboot reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Free RAM.
    Usable,
    /// Reserved by the platform.
    Reserved,
    /// ACPI tables, reclaimable once the OS has read them.
    AcpiReclaim,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Defective or otherwise unusable RAM.
    Unusable,
    /// coreboot tables and CBMEM (coreboot type 16).
    CorebootTables,
    /// Any other type number, kept as the source gave it.
    Other(u32),
}

impl MemoryKind {
    pub fn is_usable(self) -> bool {
        self == MemoryKind::Usable
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub size: u64,
    pub kind: MemoryKind,
}

impl MemoryRegion {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}
