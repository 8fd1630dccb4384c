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

    /// The one place a kind gets its human name, in the [`KindName`] style the caller
    /// writes: a short label for the memory map listing, a phrase for messages.
    pub fn name(self, style: KindName) -> &'static str {
        match (style, self) {
            (KindName::Label, MemoryKind::Usable) => "usable",
            (KindName::Label, MemoryKind::Reserved) => "reserved",
            (KindName::Label, MemoryKind::AcpiReclaim) => "ACPI reclaim",
            (KindName::Label, MemoryKind::AcpiNvs) => "ACPI NVS",
            (KindName::Label, MemoryKind::Unusable) => "unusable",
            (KindName::Label, MemoryKind::CorebootTables) => "coreboot tables",
            (KindName::Label, MemoryKind::Other(_)) => "other",
            (KindName::Phrase, MemoryKind::Usable) => "usable RAM",
            (KindName::Phrase, MemoryKind::Reserved) => "firmware-reserved memory",
            (KindName::Phrase, MemoryKind::AcpiReclaim) => "ACPI tables",
            (KindName::Phrase, MemoryKind::AcpiNvs) => "ACPI NVS memory",
            (KindName::Phrase, MemoryKind::Unusable) => "unusable (defective) RAM",
            (KindName::Phrase, MemoryKind::CorebootTables) => "coreboot tables",
            (KindName::Phrase, MemoryKind::Other(_)) => "memory of unknown type",
        }
    }
}

/// How [`MemoryKind::name`] words a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindName {
    /// A column label, as in the boot log's memory map listing: "reserved", "ACPI NVS".
    Label,
    /// A phrase that reads inside a sentence, for error messages: "overlaps
    /// firmware-reserved memory 0xf0000-0x100000".
    Phrase,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_boot_log_words_and_phrases_the_message_words() {
        let kinds = [
            (MemoryKind::Usable, "usable", "usable RAM"),
            (MemoryKind::Reserved, "reserved", "firmware-reserved memory"),
            (MemoryKind::AcpiReclaim, "ACPI reclaim", "ACPI tables"),
            (MemoryKind::AcpiNvs, "ACPI NVS", "ACPI NVS memory"),
            (MemoryKind::Unusable, "unusable", "unusable (defective) RAM"),
            (
                MemoryKind::CorebootTables,
                "coreboot tables",
                "coreboot tables",
            ),
            (MemoryKind::Other(20), "other", "memory of unknown type"),
        ];
        for (kind, label, phrase) in kinds {
            assert_eq!(kind.name(KindName::Label), label);
            assert_eq!(kind.name(KindName::Phrase), phrase);
        }
    }
}
