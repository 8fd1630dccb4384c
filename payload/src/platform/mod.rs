//! One view of the machine, whichever way parkboot was entered.
//!
//! The coreboot table parser (`coreboot`) and the PVH start info parser (`pvh`) both
//! fill a [`Platform`]; everything after them reads only this. The other modules here
//! read the rest of what the platform offers: ACPI tables, CBFS, fw_cfg, the CBMEM
//! console, and where the configuration and the default kernel come from (`sources`).

pub mod acpi;
pub mod cbfs;
pub mod cbmem_console;
pub mod coreboot;
pub mod fw_cfg;
pub mod pvh;
pub mod sources;

use heapless::Vec;

use crate::memory::{MemoryKind, MemoryRegion, MAX_MEMORY_REGIONS};

/// How many boot modules parkboot keeps.
pub const MAX_MODULES: usize = 16;
/// Longest command line parkboot keeps, in bytes.
pub const MAX_CMDLINE: usize = 1024;

/// Where parkboot was started from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootSource {
    /// The ELF entry point, called by coreboot with the coreboot table at `[esp+4]`.
    Coreboot,
    /// The PVH entry point (Xen ELF note 18), `ebx` = `hvm_start_info`.
    Pvh,
}

impl BootSource {
    pub fn name(self) -> &'static str {
        match self {
            BootSource::Coreboot => "coreboot",
            BootSource::Pvh => "pvh",
        }
    }
}

/// How the serial console's registers are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialAccess {
    /// x86 I/O ports starting at `base`.
    Io { base: u16 },
    /// Memory-mapped registers starting at `base`, `reg_width` bytes apart.
    Mmio { base: u64, reg_width: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialConsole {
    pub access: SerialAccess,
    pub baud: u32,
    /// UART input clock in Hz (1843200 for a PC 16550).
    pub input_hz: u32,
}

impl SerialConsole {
    /// COM1 at 115200 baud: the console when nothing says otherwise.
    pub const COM1: SerialConsole = SerialConsole {
        access: SerialAccess::Io { base: 0x3f8 },
        baud: 115_200,
        input_hz: 1_843_200,
    };
}

/// A boot module (PVH module list entry), in physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    pub start: u64,
    pub size: u64,
    /// Physical address of the module's NUL-terminated command line, 0 if none.
    pub cmdline: u64,
}

/// Where CBFS lives, from coreboot's LB_TAG_BOOT_MEDIA_PARAMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbfsLocation {
    pub fmap_offset: u64,
    pub cbfs_offset: u64,
    pub cbfs_size: u64,
    pub boot_media_size: u64,
}

/// Everything parkboot learns about the machine from its boot source.
#[derive(Clone, Debug)]
pub struct Platform {
    pub source: BootSource,
    /// Physical address of the structure the source handed over (coreboot table header
    /// or `hvm_start_info`).
    pub source_table: u64,
    pub memory: Vec<MemoryRegion, MAX_MEMORY_REGIONS>,
    pub serial: Option<SerialConsole>,
    /// Physical address of the ACPI RSDP, when the source gave one.
    pub rsdp: Option<u64>,
    pub cmdline: heapless::String<MAX_CMDLINE>,
    pub modules: Vec<Module, MAX_MODULES>,
    pub cbfs: Option<CbfsLocation>,
    /// Physical address of coreboot's CBMEM console header (LB_TAG_CBMEM_CONSOLE).
    pub cbmem_console: Option<u64>,
}

impl Platform {
    pub fn new(source: BootSource, source_table: u64) -> Self {
        Platform {
            source,
            source_table,
            memory: Vec::new(),
            serial: None,
            rsdp: None,
            cmdline: heapless::String::new(),
            modules: Vec::new(),
            cbfs: None,
            cbmem_console: None,
        }
    }

    /// Bytes of usable RAM in the memory map.
    pub fn usable_bytes(&self) -> u64 {
        self.memory
            .iter()
            .filter(|r| r.kind.is_usable())
            .map(|r| r.size)
            .sum()
    }

    /// End of the highest range that holds RAM (usable, ACPI, coreboot's own, or
    /// defective RAM). Plain "reserved" ranges are left out: above 4 GiB they are
    /// usually MMIO windows (QEMU reserves 0xfd00000000-0x10000000000 this way), and
    /// mapping them would cost page tables for nothing.
    pub fn top_of_ram(&self) -> u64 {
        self.memory
            .iter()
            .filter(|r| !matches!(r.kind, MemoryKind::Reserved | MemoryKind::Other(_)))
            .map(|r| r.end())
            .max()
            .unwrap_or(0)
    }
}

/// Read access to physical memory.
///
/// The payload implements it over its identity map; host tests implement it over byte
/// buffers placed at pretend physical addresses.
pub trait PhysicalMemory {
    /// The `len` bytes at physical address `addr`, or `None` when that range cannot be
    /// read.
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_of_ram_ignores_reserved_windows_above_ram() {
        let mut p = Platform::new(BootSource::Pvh, 0);
        let ranges = [
            (0, 0x9fc00, MemoryKind::Usable),
            (0x100000, 0x1ff00000, MemoryKind::Usable),
            (0x1ff00000, 0x100000, MemoryKind::AcpiNvs),
            (0xfd_0000_0000, 0x3_0000_0000, MemoryKind::Reserved),
        ];
        for (start, size, kind) in ranges {
            p.memory.push(MemoryRegion { start, size, kind }).unwrap();
        }
        assert_eq!(p.top_of_ram(), 0x2000_0000);
        assert_eq!(p.usable_bytes(), 0x9fc00 + 0x1ff00000);
    }
}

/// A [`PhysicalMemory`] over byte buffers, for host tests and for building tables.
#[cfg(test)]
pub mod fake {
    use super::PhysicalMemory;
    extern crate std;
    use std::vec::Vec;

    #[derive(Default)]
    pub struct FakeMemory {
        pub chunks: Vec<(u64, Vec<u8>)>,
    }

    impl FakeMemory {
        pub fn place(&mut self, addr: u64, bytes: &[u8]) {
            self.chunks.push((addr, bytes.to_vec()));
        }
    }

    impl PhysicalMemory for FakeMemory {
        fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
            self.chunks.iter().find_map(|(base, data)| {
                let off = addr.checked_sub(*base)? as usize;
                data.get(off..off.checked_add(len)?)
            })
        }
    }
}

/// Physical address of the real-mode interrupt vector of INT 15h, the BIOS's system
/// services (E820, the BIOS's own memory map, among them).
pub const INT15_VECTOR_ADDRESS: u64 = 0x15 * 4;
/// Start of the BIOS window (option ROMs and the system BIOS) as a real-mode segment.
const BIOS_WINDOW_SEGMENT: u16 = 0xC000;

/// `(segment, offset)` of INT 15h when a legacy BIOS installed it: a vector into the
/// 0xC0000-0xFFFFF BIOS window. coreboot runs no BIOS and installs no vector; under
/// PVH, QEMU's SeaBIOS has run first and points INT 15h into its own code. A kernel
/// that asks that BIOS for the memory map does not learn parkboot's reservations.
pub fn legacy_bios_int15(vector: [u8; 4]) -> Option<(u16, u16)> {
    let offset = u16::from_le_bytes([vector[0], vector[1]]);
    let segment = u16::from_le_bytes([vector[2], vector[3]]);
    (segment >= BIOS_WINDOW_SEGMENT).then_some((segment, offset))
}

#[cfg(test)]
mod legacy_bios_tests {
    use super::legacy_bios_int15;

    #[test]
    fn a_vector_into_the_bios_window_is_a_legacy_bios() {
        // SeaBIOS under QEMU: F000:E3FE style vectors.
        assert_eq!(
            legacy_bios_int15([0xfe, 0xe3, 0x00, 0xf0]),
            Some((0xf000, 0xe3fe))
        );
        assert_eq!(legacy_bios_int15([0, 0, 0x00, 0xc8]), Some((0xc800, 0)));
        // Page 0 as coreboot leaves it (zeros, or its own table bytes below 0xC000).
        assert_eq!(legacy_bios_int15([0; 4]), None);
        assert_eq!(legacy_bios_int15([0x10, 0x00, 0x00, 0x9f]), None);
    }
}
