//! PVH start info: what parkboot learns when a hypervisor (QEMU `-kernel`,
//! cloud-hypervisor, Firecracker) starts it through the Xen PVH entry note.
//!
//! The hypervisor leaves `ebx` pointing at an `hvm_start_info`. Its memory map is only
//! in version 1 and later; with version 0 [`parse`] leaves the memory map empty and the
//! caller has to get one elsewhere (fw_cfg's e820 table under QEMU). Everything is read
//! through [`PhysicalMemory`] with bounds-checked accessors, so a bad structure gives a
//! [`PvhError`] that says where, never a fault.
//!
//! `StartInfoBuilder` (test-only: host tests, and test crates through the `test-support`
//! feature) lays out the same structures.

use core::fmt;
use core::mem::offset_of;

use crate::memory::{MemoryKind, MemoryRegion, MAX_MEMORY_REGIONS};
use crate::platform::{Module, PhysicalMemory, Platform, MAX_CMDLINE, MAX_MODULES};
use crate::wire::{wire_struct, WireField};

/// `hvm_start_info.magic`: "xEn3" with the 0x80 bit of the "E" set.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// The first version with `memmap_paddr` and `memmap_entries`. Later versions only
/// append fields, so every version from this one on has them.
pub const HVM_START_INFO_VERSION_MEMMAP: u32 = 1;

/// E820 / ACPI address range types used in `hvm_memmap_table_entry.type`.
pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;
pub const XEN_HVM_MEMMAP_TYPE_NVS: u32 = 4;
pub const XEN_HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
pub const XEN_HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
pub const XEN_HVM_MEMMAP_TYPE_PMEM: u32 = 7;

wire_struct! {
    /// `struct hvm_start_info`. Version 0 ends before `memmap_paddr`.
    pub struct HvmStartInfo {
        pub magic: u32,
        pub version: u32,
        /// `SIF_*` flags; parkboot needs none of them.
        pub flags: u32,
        pub nr_modules: u32,
        /// Physical address of `nr_modules` [`HvmModlistEntry`].
        pub modlist_paddr: u64,
        /// Physical address of a NUL-terminated command line; 0 when none.
        pub cmdline_paddr: u64,
        /// Physical address of the ACPI RSDP; 0 when none.
        pub rsdp_paddr: u64,
        /// Physical address of `memmap_entries` [`HvmMemmapTableEntry`].
        pub memmap_paddr: u64,
        pub memmap_entries: u32,
        pub reserved: u32,
    }
}

/// Size of a version 0 `hvm_start_info`.
pub const HVM_START_INFO_V0_SIZE: usize = offset_of!(HvmStartInfo, memmap_paddr);

const _: () = assert!(HvmStartInfo::SIZE == 56);
const _: () = assert!(HVM_START_INFO_V0_SIZE == 40);
const _: () = assert!(offset_of!(HvmStartInfo, magic) == 0);
const _: () = assert!(offset_of!(HvmStartInfo, version) == 4);
const _: () = assert!(offset_of!(HvmStartInfo, flags) == 8);
const _: () = assert!(offset_of!(HvmStartInfo, nr_modules) == 12);
const _: () = assert!(offset_of!(HvmStartInfo, modlist_paddr) == 16);
const _: () = assert!(offset_of!(HvmStartInfo, cmdline_paddr) == 24);
const _: () = assert!(offset_of!(HvmStartInfo, rsdp_paddr) == 32);
const _: () = assert!(offset_of!(HvmStartInfo, memmap_paddr) == 40);
const _: () = assert!(offset_of!(HvmStartInfo, memmap_entries) == 48);
const _: () = assert!(offset_of!(HvmStartInfo, reserved) == 52);

wire_struct! {
    /// `struct hvm_modlist_entry`.
    pub struct HvmModlistEntry {
        pub paddr: u64,
        pub size: u64,
        /// Physical address of the module's NUL-terminated command line; 0 when none.
        pub cmdline_paddr: u64,
        pub reserved: u64,
    }
}

const _: () = assert!(HvmModlistEntry::SIZE == 32);
const _: () = assert!(offset_of!(HvmModlistEntry, paddr) == 0);
const _: () = assert!(offset_of!(HvmModlistEntry, size) == 8);
const _: () = assert!(offset_of!(HvmModlistEntry, cmdline_paddr) == 16);
const _: () = assert!(offset_of!(HvmModlistEntry, reserved) == 24);

wire_struct! {
    /// `struct hvm_memmap_table_entry`.
    pub struct HvmMemmapTableEntry {
        pub addr: u64,
        pub size: u64,
        /// One of the `XEN_HVM_MEMMAP_TYPE_*` values.
        pub r#type: u32,
        pub reserved: u32,
    }
}

const _: () = assert!(HvmMemmapTableEntry::SIZE == 24);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, addr) == 0);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, size) == 8);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, r#type) == 16);
const _: () = assert!(offset_of!(HvmMemmapTableEntry, reserved) == 20);

/// The start info, module list and memory map are all 8-byte structures.
#[cfg(any(test, feature = "test-support"))]
const PVH_ALIGNMENT: usize = 8;

/// What is wrong with one start info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhProblem {
    /// The first `len` bytes of the start info cannot be read.
    Unreadable {
        len: usize,
    },
    BadMagic {
        found: u32,
    },
    /// More modules than [`MAX_MODULES`].
    TooManyModules {
        count: u32,
    },
    /// The module list at `addr` cannot be read for `count` entries.
    ModuleListUnreadable {
        addr: u64,
        count: u32,
    },
    /// More memory map entries than [`MAX_MEMORY_REGIONS`].
    TooManyMemoryRanges {
        entries: u32,
    },
    /// The memory map at `addr` cannot be read for `entries` entries.
    MemmapUnreadable {
        addr: u64,
        entries: u32,
    },
    /// Byte `offset` of the command line at `addr` cannot be read (before its NUL).
    CmdlineUnreadable {
        addr: u64,
        offset: usize,
    },
}

impl fmt::Display for PvhProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PvhProblem::Unreadable { len } => write!(f, "cannot read its first 0x{len:x} bytes"),
            PvhProblem::BadMagic { found } => write!(
                f,
                "magic is 0x{found:08x}, expected 0x{XEN_HVM_START_MAGIC_VALUE:08x}"
            ),
            PvhProblem::TooManyModules { count } => write!(
                f,
                "nr_modules is {count}, more than the {MAX_MODULES} parkboot keeps"
            ),
            PvhProblem::ModuleListUnreadable { addr, count } => write!(
                f,
                "module list at 0x{addr:x} cannot be read for {count} entries of 0x{:x} bytes",
                HvmModlistEntry::SIZE
            ),
            PvhProblem::TooManyMemoryRanges { entries } => write!(
                f,
                "memmap_entries is {entries}, more than the {MAX_MEMORY_REGIONS} parkboot keeps"
            ),
            PvhProblem::MemmapUnreadable { addr, entries } => write!(
                f,
                "memory map at 0x{addr:x} cannot be read for {entries} entries of 0x{:x} bytes",
                HvmMemmapTableEntry::SIZE
            ),
            PvhProblem::CmdlineUnreadable { addr, offset } => write!(
                f,
                "command line at 0x{addr:x} cannot be read at byte {offset}, before its NUL"
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvhError {
    /// The start info at `start_info` is bad.
    StartInfo {
        start_info: u64,
        problem: PvhProblem,
    },
    /// `StartInfoBuilder::write` (tests): the caller's buffer is too small.
    BufferTooSmall { needed: usize, available: usize },
}

impl fmt::Display for PvhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PvhError::StartInfo {
                start_info,
                problem,
            } => write!(f, "PVH start info at 0x{start_info:x}: {problem}"),
            PvhError::BufferTooSmall { needed, available } => write!(
                f,
                "PVH start info needs 0x{needed:x} bytes, the buffer has 0x{available:x}"
            ),
        }
    }
}

/// Xen's memory map types to parkboot's kinds.
pub fn memory_kind(e820_type: u32) -> MemoryKind {
    match e820_type {
        XEN_HVM_MEMMAP_TYPE_RAM => MemoryKind::Usable,
        XEN_HVM_MEMMAP_TYPE_RESERVED => MemoryKind::Reserved,
        XEN_HVM_MEMMAP_TYPE_ACPI => MemoryKind::AcpiReclaim,
        XEN_HVM_MEMMAP_TYPE_NVS => MemoryKind::AcpiNvs,
        XEN_HVM_MEMMAP_TYPE_UNUSABLE => MemoryKind::Unusable,
        other => MemoryKind::Other(other),
    }
}

/// parkboot's kinds back to Xen's types, for [`StartInfoBuilder`]. E820 has no type for
/// coreboot's tables, so they become reserved, which is how they must be treated anyway.
#[cfg(any(test, feature = "test-support"))]
pub fn e820_type(kind: MemoryKind) -> u32 {
    match kind {
        MemoryKind::Usable => XEN_HVM_MEMMAP_TYPE_RAM,
        MemoryKind::Reserved | MemoryKind::CorebootTables => XEN_HVM_MEMMAP_TYPE_RESERVED,
        MemoryKind::AcpiReclaim => XEN_HVM_MEMMAP_TYPE_ACPI,
        MemoryKind::AcpiNvs => XEN_HVM_MEMMAP_TYPE_NVS,
        MemoryKind::Unusable => XEN_HVM_MEMMAP_TYPE_UNUSABLE,
        MemoryKind::Other(other) => other,
    }
}

/// Reads the start info at `addr` into `platform`.
///
/// Fills the memory map (version 1 and later; version 0 leaves it empty, and the caller
/// must get one from another source), the modules, the command line (cut at
/// [`MAX_CMDLINE`] bytes; bytes that are not UTF-8 become `?`) and the RSDP (0 means
/// none). Any version is accepted because Xen guarantees later versions only append.
/// On error `platform` is unchanged. `source` and `source_table` are the caller's to
/// set.
pub fn parse(
    mem: &impl PhysicalMemory,
    addr: u64,
    platform: &mut Platform,
) -> Result<(), PvhError> {
    let fail = |problem| PvhError::StartInfo {
        start_info: addr,
        problem,
    };

    // Read version 0's part first: the magic must be checked before the version says
    // how much more there is.
    let unreadable = |len| fail(PvhProblem::Unreadable { len });
    let v0 = mem
        .bytes(addr, HVM_START_INFO_V0_SIZE)
        .ok_or(unreadable(HVM_START_INFO_V0_SIZE))?;
    let magic = u32::read_at(v0, offset_of!(HvmStartInfo, magic))
        .ok_or(unreadable(HVM_START_INFO_V0_SIZE))?;
    if magic != XEN_HVM_START_MAGIC_VALUE {
        return Err(fail(PvhProblem::BadMagic { found: magic }));
    }
    let version = u32::read_at(v0, offset_of!(HvmStartInfo, version))
        .ok_or(unreadable(HVM_START_INFO_V0_SIZE))?;
    let size = if version >= HVM_START_INFO_VERSION_MEMMAP {
        HvmStartInfo::SIZE
    } else {
        HVM_START_INFO_V0_SIZE
    };
    let present = mem.bytes(addr, size).ok_or(unreadable(size))?;
    // Fields a version 0 structure lacks read as zero: no memory map.
    let mut raw = [0u8; HvmStartInfo::SIZE];
    for (to, from) in raw.iter_mut().zip(present) {
        *to = *from;
    }
    let info = HvmStartInfo::read_from(&raw).ok_or(unreadable(size))?;

    // Gather every slice first so that nothing is written to the platform unless the
    // whole structure is readable.
    let modules = if info.nr_modules == 0 {
        &[][..]
    } else {
        if info.nr_modules as usize > MAX_MODULES {
            return Err(fail(PvhProblem::TooManyModules {
                count: info.nr_modules,
            }));
        }
        read_array(
            mem,
            info.modlist_paddr,
            info.nr_modules,
            HvmModlistEntry::SIZE,
        )
        .ok_or(fail(PvhProblem::ModuleListUnreadable {
            addr: info.modlist_paddr,
            count: info.nr_modules,
        }))?
    };

    let memmap = if info.memmap_entries == 0 {
        &[][..]
    } else {
        if info.memmap_entries as usize > MAX_MEMORY_REGIONS {
            return Err(fail(PvhProblem::TooManyMemoryRanges {
                entries: info.memmap_entries,
            }));
        }
        read_array(
            mem,
            info.memmap_paddr,
            info.memmap_entries,
            HvmMemmapTableEntry::SIZE,
        )
        .ok_or(fail(PvhProblem::MemmapUnreadable {
            addr: info.memmap_paddr,
            entries: info.memmap_entries,
        }))?
    };

    let mut cmdline = [0u8; MAX_CMDLINE];
    let cmdline_len = if info.cmdline_paddr == 0 {
        0
    } else {
        read_cmdline(mem, info.cmdline_paddr, &mut cmdline).map_err(|offset| {
            fail(PvhProblem::CmdlineUnreadable {
                addr: info.cmdline_paddr,
                offset,
            })
        })?
    };

    platform.memory.clear();
    for entry in memmap
        .chunks_exact(HvmMemmapTableEntry::SIZE)
        .filter_map(HvmMemmapTableEntry::read_from)
    {
        // Cannot fail: the count was checked against the capacity above.
        let _ = platform.memory.push(MemoryRegion {
            start: entry.addr,
            size: entry.size,
            kind: memory_kind(entry.r#type),
        });
    }
    platform.modules.clear();
    for entry in modules
        .chunks_exact(HvmModlistEntry::SIZE)
        .filter_map(HvmModlistEntry::read_from)
    {
        let _ = platform.modules.push(Module {
            start: entry.paddr,
            size: entry.size,
            cmdline: entry.cmdline_paddr,
        });
    }
    platform.cmdline.clear();
    // `read_cmdline` returns at most the buffer's length.
    let cmdline = cmdline.get(..cmdline_len).unwrap_or(&cmdline);
    for chunk in cmdline.utf8_chunks() {
        // Each replacement stands for at least one byte, so the text always fits.
        let _ = platform.cmdline.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let _ = platform.cmdline.push('?');
        }
    }
    platform.rsdp = Some(info.rsdp_paddr).filter(|&rsdp| rsdp != 0);
    Ok(())
}

/// `count` entries of `size` bytes at `addr`; `None` when unreadable or at address 0
/// (which Xen uses for "not present").
fn read_array(mem: &impl PhysicalMemory, addr: u64, count: u32, size: usize) -> Option<&[u8]> {
    if addr == 0 {
        return None;
    }
    mem.bytes(addr, (count as usize).checked_mul(size)?)
}

/// Copies the NUL-terminated string at `addr` into `out`, stopping at the NUL or when
/// `out` is full; returns the length, or the offset of the first unreadable byte.
///
/// Reads byte by byte because the string's length is unknown and the bytes after its
/// NUL need not be readable.
fn read_cmdline(mem: &impl PhysicalMemory, addr: u64, out: &mut [u8]) -> Result<usize, usize> {
    for (offset, slot) in out.iter_mut().enumerate() {
        let byte = addr
            .checked_add(offset as u64)
            .and_then(|a| mem.bytes(a, 1))
            .and_then(|b| b.first().copied())
            .ok_or(offset)?;
        if byte == 0 {
            return Ok(offset);
        }
        *slot = byte;
    }
    let next = addr
        .checked_add(out.len() as u64)
        .and_then(|a| mem.bytes(a, 1))
        .and_then(|b| b.first().copied());
    if next != Some(0) {
        log::warn!(
            "PVH command line at {addr:#x} is longer than {} bytes; keeping only those",
            out.len()
        );
    }
    Ok(out.len())
}

/// Lays out an `hvm_start_info` with its module list, memory map and command line in one
/// buffer, as a hypervisor would, so tests can exercise parkboot's PVH path without one.
/// Test-only (the `test-support` feature): not part of the shipped library.
///
/// Layout in the buffer: start info, module list, memory map (version 1 and later only),
/// command line, each 8-byte aligned.
#[cfg(any(test, feature = "test-support"))]
#[derive(Clone, Copy, Debug)]
pub struct StartInfoBuilder<'a> {
    version: u32,
    cmdline: Option<&'a str>,
    rsdp: u64,
    modules: &'a [Module],
    memory: &'a [MemoryRegion],
}

#[cfg(any(test, feature = "test-support"))]
impl Default for StartInfoBuilder<'_> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(any(test, feature = "test-support"))]
impl<'a> StartInfoBuilder<'a> {
    /// A version 1 start info with nothing in it.
    pub fn new() -> Self {
        StartInfoBuilder {
            version: HVM_START_INFO_VERSION_MEMMAP,
            cmdline: None,
            rsdp: 0,
            modules: &[],
            memory: &[],
        }
    }

    /// Version 0 has no memory map; what [`StartInfoBuilder::memory`] gave is dropped.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    pub fn cmdline(mut self, cmdline: &'a str) -> Self {
        self.cmdline = Some(cmdline);
        self
    }

    pub fn rsdp(mut self, rsdp: u64) -> Self {
        self.rsdp = rsdp;
        self
    }

    /// Each module's `cmdline` is written as the physical address it already is.
    pub fn modules(mut self, modules: &'a [Module]) -> Self {
        self.modules = modules;
        self
    }

    pub fn memory(mut self, memory: &'a [MemoryRegion]) -> Self {
        self.memory = memory;
        self
    }

    /// Writes everything into `buf`, which will sit at physical address `base`; returns
    /// the bytes used. The start info is at `base`.
    pub fn write(&self, buf: &mut [u8], base: u64) -> Result<usize, PvhError> {
        let has_memmap = self.version >= HVM_START_INFO_VERSION_MEMMAP;
        let info_size = if has_memmap {
            HvmStartInfo::SIZE
        } else {
            HVM_START_INFO_V0_SIZE
        };
        let memory: &[MemoryRegion] = if has_memmap { self.memory } else { &[] };

        let modlist_at = info_size.next_multiple_of(PVH_ALIGNMENT);
        let memmap_at = (modlist_at + self.modules.len() * HvmModlistEntry::SIZE)
            .next_multiple_of(PVH_ALIGNMENT);
        let cmdline_at =
            (memmap_at + memory.len() * HvmMemmapTableEntry::SIZE).next_multiple_of(PVH_ALIGNMENT);
        let end = match self.cmdline {
            Some(cmdline) => cmdline_at + cmdline.len() + 1,
            None => cmdline_at,
        };
        let available = buf.len();
        let too_small = || PvhError::BufferTooSmall {
            needed: end,
            available,
        };
        let out = buf.get_mut(..end).ok_or_else(too_small)?;
        out.fill(0);

        let paddr = |offset: usize, present: bool| {
            if present {
                base + offset as u64
            } else {
                0
            }
        };
        let info = HvmStartInfo {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: self.version,
            flags: 0,
            nr_modules: self.modules.len() as u32,
            modlist_paddr: paddr(modlist_at, !self.modules.is_empty()),
            cmdline_paddr: paddr(cmdline_at, self.cmdline.is_some()),
            rsdp_paddr: self.rsdp,
            memmap_paddr: paddr(memmap_at, !memory.is_empty()),
            memmap_entries: memory.len() as u32,
            reserved: 0,
        };
        let mut full = [0u8; HvmStartInfo::SIZE];
        info.write_to(&mut full);
        // Every offset below is under `end`, the length of `out`.
        let info_bytes = full.get(..info_size).ok_or_else(too_small)?;
        out.get_mut(..info_size)
            .ok_or_else(too_small)?
            .copy_from_slice(info_bytes);

        for (module, slot) in self.modules.iter().zip(
            out.get_mut(modlist_at..)
                .ok_or_else(too_small)?
                .chunks_exact_mut(HvmModlistEntry::SIZE),
        ) {
            HvmModlistEntry {
                paddr: module.start,
                size: module.size,
                cmdline_paddr: module.cmdline,
                reserved: 0,
            }
            .write_to(slot);
        }
        for (region, slot) in memory.iter().zip(
            out.get_mut(memmap_at..)
                .ok_or_else(too_small)?
                .chunks_exact_mut(HvmMemmapTableEntry::SIZE),
        ) {
            HvmMemmapTableEntry {
                addr: region.start,
                size: region.size,
                r#type: e820_type(region.kind),
                reserved: 0,
            }
            .write_to(slot);
        }
        if let Some(cmdline) = self.cmdline {
            out.get_mut(cmdline_at..cmdline_at + cmdline.len())
                .ok_or_else(too_small)?
                .copy_from_slice(cmdline.as_bytes());
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::platform::fake::FakeMemory;
    use crate::platform::BootSource;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    const START_INFO: u64 = 0x6000;

    fn platform() -> Platform {
        Platform::new(BootSource::Pvh, START_INFO)
    }

    const MODULES: [Module; 2] = [
        Module {
            start: 0x100_0000,
            size: 0x12_3456,
            cmdline: 0x5000,
        },
        Module {
            start: 0x200_0000,
            size: 0x1000,
            cmdline: 0,
        },
    ];

    fn memory() -> Vec<MemoryRegion> {
        vec![
            MemoryRegion {
                start: 0,
                size: 0x9fc00,
                kind: MemoryKind::Usable,
            },
            MemoryRegion {
                start: 0x9fc00,
                size: 0x400,
                kind: MemoryKind::Reserved,
            },
            MemoryRegion {
                start: 0x10_0000,
                size: 0x7ff0_0000,
                kind: MemoryKind::Usable,
            },
            MemoryRegion {
                start: 0x7fff_0000,
                size: 0x1_0000,
                kind: MemoryKind::AcpiReclaim,
            },
            MemoryRegion {
                start: 0xfeff_c000,
                size: 0x4000,
                kind: MemoryKind::AcpiNvs,
            },
            MemoryRegion {
                start: 0xfee0_0000,
                size: 0x1000,
                kind: MemoryKind::Unusable,
            },
            MemoryRegion {
                start: 0x1_0000_0000,
                size: 0x4000_0000,
                kind: MemoryKind::Other(XEN_HVM_MEMMAP_TYPE_PMEM),
            },
        ]
    }

    fn build(builder: StartInfoBuilder) -> Vec<u8> {
        let mut buf = vec![0u8; 8192];
        let used = builder.write(&mut buf, START_INFO).unwrap();
        buf.truncate(used);
        buf
    }

    fn parse_bytes(bytes: &[u8]) -> Result<Platform, PvhError> {
        let mut mem = FakeMemory::default();
        mem.place(START_INFO, bytes);
        let mut p = platform();
        parse(&mem, START_INFO, &mut p).map(|()| p)
    }

    fn problem(result: Result<Platform, PvhError>) -> PvhProblem {
        match result {
            Err(PvhError::StartInfo {
                start_info,
                problem,
            }) => {
                assert_eq!(start_info, START_INFO);
                problem
            }
            other => panic!("expected a start info problem, got {other:?}"),
        }
    }

    #[test]
    fn version_1_with_everything() {
        let memory = memory();
        let bytes = build(
            StartInfoBuilder::new()
                .cmdline("console=ttyS0 park.cpus=all")
                .rsdp(0xf_5a40)
                .modules(&MODULES)
                .memory(&memory),
        );
        let p = parse_bytes(&bytes).unwrap();
        assert_eq!(p.memory.as_slice(), memory.as_slice());
        assert_eq!(p.modules.as_slice(), &MODULES);
        assert_eq!(p.cmdline.as_str(), "console=ttyS0 park.cpus=all");
        assert_eq!(p.rsdp, Some(0xf_5a40));
        assert_eq!(p.serial, None);
        assert_eq!(p.cbfs, None);
    }

    #[test]
    fn hand_written_start_info() {
        // Written from start_info.h's layout, independent of the structs.
        let mut bytes = Vec::new();
        let push32 = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_le_bytes());
        push32(&mut bytes, 0x336e_c578);
        push32(&mut bytes, 1);
        push32(&mut bytes, 0);
        push32(&mut bytes, 1); // nr_modules
        for v in [START_INFO + 56, START_INFO + 88, 0xe_0000, START_INFO + 120] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        push32(&mut bytes, 1); // memmap_entries
        push32(&mut bytes, 0);
        // Module at 56.
        for v in [0x40_0000u64, 0x800, 0, 0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        // Command line at 88.
        bytes.extend_from_slice(b"quiet\0");
        bytes.resize(120, 0xcc);
        // Memory map entry at 120.
        for v in [0x10_0000u64, 0x100_0000] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        push32(&mut bytes, 1);
        push32(&mut bytes, 0);

        let p = parse_bytes(&bytes).unwrap();
        assert_eq!(
            p.modules.as_slice(),
            &[Module {
                start: 0x40_0000,
                size: 0x800,
                cmdline: 0
            }]
        );
        assert_eq!(p.cmdline.as_str(), "quiet");
        assert_eq!(p.rsdp, Some(0xe_0000));
        assert_eq!(
            p.memory.as_slice(),
            &[MemoryRegion {
                start: 0x10_0000,
                size: 0x100_0000,
                kind: MemoryKind::Usable
            }]
        );
    }

    #[test]
    fn version_0_has_no_memory_map() {
        let memory = memory();
        let bytes = build(
            StartInfoBuilder::new()
                .version(0)
                .cmdline("root=/dev/vda")
                .modules(&MODULES[..1])
                .memory(&memory),
        );
        // Version 0 is only 40 bytes long: split memory right after it, so that a read
        // of a version 1 header would fail.
        let mut mem = FakeMemory::default();
        mem.place(START_INFO, &bytes[..HVM_START_INFO_V0_SIZE]);
        mem.place(START_INFO + 40, &bytes[40..]);
        let mut p = platform();
        p.memory
            .push(MemoryRegion {
                start: 0,
                size: 1,
                kind: MemoryKind::Usable,
            })
            .unwrap();
        parse(&mem, START_INFO, &mut p).unwrap();
        assert!(p.memory.is_empty());
        assert_eq!(p.modules.as_slice(), &MODULES[..1]);
        assert_eq!(p.cmdline.as_str(), "root=/dev/vda");
        assert_eq!(p.rsdp, None);

        // Whatever follows a version 0 structure (here its module list) is not a memory
        // map, even when it looks like one.
        let mut bytes = bytes;
        bytes.resize(HvmStartInfo::SIZE.max(bytes.len()), 0);
        0xdead_0000u64.write_at(&mut bytes, offset_of!(HvmStartInfo, memmap_paddr));
        5u32.write_at(&mut bytes, offset_of!(HvmStartInfo, memmap_entries));
        assert!(parse_bytes(&bytes).unwrap().memory.is_empty());
    }

    #[test]
    fn later_versions_are_read_as_version_1() {
        let memory = memory();
        let bytes = build(StartInfoBuilder::new().version(2).memory(&memory));
        assert_eq!(parse_bytes(&bytes).unwrap().memory.len(), memory.len());
    }

    #[test]
    fn bad_magic() {
        let mut bytes = build(StartInfoBuilder::new());
        bytes[3] = 0x34;
        let err = parse_bytes(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PVH start info at 0x6000: magic is 0x346ec578, expected 0x336ec578"
        );
        assert_eq!(
            problem(parse_bytes(&bytes[..16])),
            PvhProblem::Unreadable { len: 40 }
        );
        // A version 1 header whose tail is missing.
        let bytes = build(StartInfoBuilder::new());
        assert_eq!(
            problem(parse_bytes(&bytes[..48])),
            PvhProblem::Unreadable { len: 56 }
        );
    }

    #[test]
    fn unreadable_memory_map() {
        let memory = memory();
        let mut bytes = build(StartInfoBuilder::new().memory(&memory));
        0xdead_0000u64.write_at(&mut bytes, offset_of!(HvmStartInfo, memmap_paddr));
        let mut p = platform();
        p.rsdp = Some(1);
        let mut mem = FakeMemory::default();
        mem.place(START_INFO, &bytes);
        let err = parse(&mem, START_INFO, &mut p).unwrap_err();
        assert_eq!(
            err,
            PvhError::StartInfo {
                start_info: START_INFO,
                problem: PvhProblem::MemmapUnreadable {
                    addr: 0xdead_0000,
                    entries: 7
                }
            }
        );
        assert!(
            err.to_string().contains("memory map at 0xdead0000"),
            "{err}"
        );
        // Nothing was written.
        assert_eq!(p.rsdp, Some(1));

        // Address 0 means "not present", even with entries claimed.
        0u64.write_at(&mut bytes, offset_of!(HvmStartInfo, memmap_paddr));
        assert!(matches!(
            problem(parse_bytes(&bytes)),
            PvhProblem::MemmapUnreadable { addr: 0, .. }
        ));

        // Too many entries to keep.
        let count = MAX_MEMORY_REGIONS as u32 + 1;
        count.write_at(&mut bytes, offset_of!(HvmStartInfo, memmap_entries));
        assert_eq!(
            problem(parse_bytes(&bytes)),
            PvhProblem::TooManyMemoryRanges { entries: count }
        );
    }

    #[test]
    fn truncated_module_list() {
        let mut bytes = build(StartInfoBuilder::new().modules(&MODULES));
        // The list claims three entries; the buffer ends after two.
        3u32.write_at(&mut bytes, offset_of!(HvmStartInfo, nr_modules));
        let err = parse_bytes(&bytes).unwrap_err();
        assert_eq!(
            err,
            PvhError::StartInfo {
                start_info: START_INFO,
                problem: PvhProblem::ModuleListUnreadable {
                    addr: START_INFO + 56,
                    count: 3
                }
            }
        );
        assert!(err.to_string().contains("module list at 0x6038"), "{err}");

        let count = MAX_MODULES as u32 + 1;
        count.write_at(&mut bytes, offset_of!(HvmStartInfo, nr_modules));
        assert_eq!(
            problem(parse_bytes(&bytes)),
            PvhProblem::TooManyModules { count }
        );
    }

    #[test]
    fn over_long_cmdline_is_cut() {
        let long = "a".repeat(MAX_CMDLINE + 500);
        let p = parse_bytes(&build(StartInfoBuilder::new().cmdline(&long))).unwrap();
        assert_eq!(p.cmdline.len(), MAX_CMDLINE);
        assert!(p.cmdline.bytes().all(|b| b == b'a'));

        // Exactly full, then NUL.
        let exact = "b".repeat(MAX_CMDLINE);
        let p = parse_bytes(&build(StartInfoBuilder::new().cmdline(&exact))).unwrap();
        assert_eq!(p.cmdline.as_str(), exact);

        // No NUL at all before memory ends: an error, not a read past the end.
        let mut bytes = build(StartInfoBuilder::new().cmdline("abc"));
        bytes.pop();
        assert_eq!(
            problem(parse_bytes(&bytes)),
            PvhProblem::CmdlineUnreadable {
                addr: START_INFO + 56,
                offset: 3
            }
        );

        // A multi-byte character cut at the limit and stray non-UTF-8 bytes.
        let mut text = "c".repeat(MAX_CMDLINE - 1);
        text.push('é');
        let p = parse_bytes(&build(StartInfoBuilder::new().cmdline(&text))).unwrap();
        assert!(p.cmdline.len() <= MAX_CMDLINE);
        assert!(p.cmdline.starts_with("ccc"));
        let mut bytes = build(StartInfoBuilder::new().cmdline("x y"));
        bytes[56 + 1] = 0xff;
        assert_eq!(parse_bytes(&bytes).unwrap().cmdline.as_str(), "x?y");
    }

    #[test]
    fn builder_buffer_too_small() {
        let mut buf = [0u8; 60];
        let err = StartInfoBuilder::new()
            .modules(&MODULES)
            .write(&mut buf, START_INFO)
            .unwrap_err();
        assert_eq!(
            err,
            PvhError::BufferTooSmall {
                needed: 56 + 64,
                available: 60
            }
        );
        assert!(err.to_string().contains("0x78"), "{err}");
    }

    #[test]
    fn memory_kind_mapping() {
        for (e820, kind) in [
            (1, MemoryKind::Usable),
            (2, MemoryKind::Reserved),
            (3, MemoryKind::AcpiReclaim),
            (4, MemoryKind::AcpiNvs),
            (5, MemoryKind::Unusable),
            (6, MemoryKind::Other(6)),
            (0xf000_0001, MemoryKind::Other(0xf000_0001)),
        ] {
            assert_eq!(memory_kind(e820), kind);
            assert_eq!(e820_type(kind), e820);
        }
        assert_eq!(
            e820_type(MemoryKind::CorebootTables),
            XEN_HVM_MEMMAP_TYPE_RESERVED
        );
    }
}
