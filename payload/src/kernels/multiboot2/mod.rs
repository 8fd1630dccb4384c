//! Multiboot2 (specification 2.0, architecture i386): what parkboot needs to boot kernels
//! that expect a multiboot2 loader, such as the Xen hypervisor.
//!
//! Everything here is a pure function over bytes, with no allocation and no hardware:
//!
//! * this file finds and checks the kernel's multiboot2 header and its tags, and holds
//!   the wire layouts and [`Mb2Error`];
//! * [`plan`] (`load.rs`) turns the image (ELF32, ELF64 or the address-tag "a.out
//!   kludge") into a [`LoadPlan`]: which file bytes go to which physical address, how
//!   much to zero after them, the 32-bit entry point, and the boot information the
//!   kernel asked for. The bare-metal side checks the exact ranges against its memory
//!   map, copies, and enters the kernel;
//! * [`InfoBuilder`] (`info.rs`) lays out the boot information the kernel gets in `ebx`.
//!
//! A gzip-compressed kernel is inflated first, by `kernels::gzip`.
//!
//! Every structure read from or written to the wire is a `#[repr(C)]` struct whose
//! field offsets are checked at compile time and are the only source of byte offsets;
//! fields are moved one by one at those offsets, so untrusted bytes are never
//! reinterpreted in place and buffers need no particular alignment. Bad input gives
//! an [`Mb2Error`] that says what is wrong and where, never a panic.

mod info;
mod load;
pub mod prepare;
#[cfg(test)]
mod tests;

pub use info::{basic_meminfo, BasicMeminfo, InfoBuilder, CONVENTIONAL_MEMORY_END};
pub use load::{plan, ImageKind, LoadPlan, Segment};

use core::fmt;
use core::mem::{offset_of, size_of};
use core::ops::Range;

use elf::endian::LittleEndian;
use elf::file::{Class, FileHeader};
use elf::parse::ParseAt;
use elf::segment::{ProgramHeader, SegmentTable};
use park::reentry::{Multiboot2ParkbootTag, MULTIBOOT2_TAG_TYPE_PARKBOOT};

use crate::memory::{MemoryMap, ReportAs, FOUR_GIB, ONE_MIB};

// ---------------------------------------------------------------------------------------
// Constants of the specification
// ---------------------------------------------------------------------------------------

/// `eax` at the kernel's entry: tells the kernel a multiboot2 loader started it.
pub const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
/// First field of the multiboot2 header.
pub const HEADER_MAGIC: u32 = 0xE852_50D6;
/// The header must lie completely within this many bytes from the start of the image.
pub const HEADER_SEARCH_LIMIT: usize = 32 * 1024;
/// The header starts at a multiple of this in the image.
pub const HEADER_ALIGN: usize = 8;
/// Header tags and boot information tags start at multiples of this.
pub const TAG_ALIGN: usize = 8;
/// `architecture` of the header: 32-bit protected mode i386, the only one parkboot
/// can enter (it hands off in 32-bit protected mode with paging off).
pub const ARCHITECTURE_I386: u32 = 0;
/// `architecture` of the header: 32-bit MIPS, named only for error messages.
pub const ARCHITECTURE_MIPS32: u32 = 4;
/// Bit 0 of a header tag's `flags`: the kernel boots even if the loader ignores the tag.
pub const HEADER_TAG_OPTIONAL: u16 = 1;
/// `load_addr` of the address tag meaning "load the file from its first byte".
pub const LOAD_ADDR_FILE_START: u32 = u32::MAX;
/// Most loadable segments a [`LoadPlan`] holds; real multiboot2 kernels have a few.
pub const MAX_SEGMENTS: usize = 16;

// Header tag types (the kernel's requests to the loader).
pub const HEADER_TAG_END: u16 = 0;
pub const HEADER_TAG_INFORMATION_REQUEST: u16 = 1;
pub const HEADER_TAG_ADDRESS: u16 = 2;
pub const HEADER_TAG_ENTRY_ADDRESS: u16 = 3;
pub const HEADER_TAG_CONSOLE_FLAGS: u16 = 4;
pub const HEADER_TAG_FRAMEBUFFER: u16 = 5;
pub const HEADER_TAG_MODULE_ALIGN: u16 = 6;
pub const HEADER_TAG_EFI_BS: u16 = 7;
pub const HEADER_TAG_ENTRY_ADDRESS_EFI32: u16 = 8;
pub const HEADER_TAG_ENTRY_ADDRESS_EFI64: u16 = 9;
pub const HEADER_TAG_RELOCATABLE: u16 = 10;

// Boot information tag types (what the loader gives the kernel).
pub const TAG_END: u32 = 0;
pub const TAG_CMDLINE: u32 = 1;
pub const TAG_BOOT_LOADER_NAME: u32 = 2;
pub const TAG_MODULE: u32 = 3;
pub const TAG_BASIC_MEMINFO: u32 = 4;
pub const TAG_BOOTDEV: u32 = 5;
pub const TAG_MMAP: u32 = 6;
pub const TAG_VBE: u32 = 7;
pub const TAG_FRAMEBUFFER: u32 = 8;
pub const TAG_ELF_SECTIONS: u32 = 9;
pub const TAG_APM: u32 = 10;
pub const TAG_EFI32: u32 = 11;
pub const TAG_EFI64: u32 = 12;
pub const TAG_SMBIOS: u32 = 13;
pub const TAG_ACPI_OLD: u32 = 14;
pub const TAG_ACPI_NEW: u32 = 15;
pub const TAG_NETWORK: u32 = 16;
pub const TAG_EFI_MMAP: u32 = 17;
pub const TAG_EFI_BS: u32 = 18;
pub const TAG_EFI32_IH: u32 = 19;
pub const TAG_EFI64_IH: u32 = 20;
pub const TAG_LOAD_BASE_ADDR: u32 = 21;

/// The boot information tags parkboot gives kernels; an information request for any
/// other type is refused unless the request is optional.
pub const PROVIDED_TAGS: [u32; 7] = [
    TAG_CMDLINE,
    TAG_BOOT_LOADER_NAME,
    TAG_MODULE,
    TAG_BASIC_MEMINFO,
    TAG_MMAP,
    TAG_ACPI_OLD,
    TAG_ACPI_NEW,
];

// Memory map entry types.
pub const MEMORY_AVAILABLE: u32 = 1;
pub const MEMORY_RESERVED: u32 = 2;
pub const MEMORY_ACPI_RECLAIMABLE: u32 = 3;
pub const MEMORY_NVS: u32 = 4;
pub const MEMORY_BADRAM: u32 = 5;

/// `entry_version` of the memory map tag.
pub const MMAP_ENTRY_VERSION: u32 = 0;
/// Bytes of an ACPI 1.0 RSDP (the old RSDP tag's payload).
pub const RSDP_V1_SIZE: usize = 20;
/// Bytes of an ACPI 2.0+ RSDP (the new RSDP tag's payload).
pub const RSDP_V2_SIZE: usize = 36;

// `preference` of the relocatable tag (0: none).
const RELOC_PREFERENCE_LOWEST: u32 = 1;
const RELOC_PREFERENCE_HIGHEST: u32 = 2;

/// Name of a boot information tag type, for messages.
pub fn info_tag_name(tag_type: u32) -> &'static str {
    match tag_type {
        TAG_END => "end",
        TAG_CMDLINE => "command line",
        TAG_BOOT_LOADER_NAME => "boot loader name",
        TAG_MODULE => "modules",
        TAG_BASIC_MEMINFO => "basic memory information",
        TAG_BOOTDEV => "BIOS boot device",
        TAG_MMAP => "memory map",
        TAG_VBE => "VBE information",
        TAG_FRAMEBUFFER => "framebuffer",
        TAG_ELF_SECTIONS => "ELF sections",
        TAG_APM => "APM table",
        TAG_EFI32 => "EFI 32-bit system table",
        TAG_EFI64 => "EFI 64-bit system table",
        TAG_SMBIOS => "SMBIOS tables",
        TAG_ACPI_OLD => "ACPI old RSDP",
        TAG_ACPI_NEW => "ACPI new RSDP",
        TAG_NETWORK => "network",
        TAG_EFI_MMAP => "EFI memory map",
        TAG_EFI_BS => "EFI boot services not terminated",
        TAG_EFI32_IH => "EFI 32-bit image handle",
        TAG_EFI64_IH => "EFI 64-bit image handle",
        TAG_LOAD_BASE_ADDR => "image load base address",
        _ => "unknown",
    }
}

/// Name of a header tag type, for messages.
pub fn header_tag_name(tag_type: u16) -> &'static str {
    match tag_type {
        HEADER_TAG_END => "end",
        HEADER_TAG_INFORMATION_REQUEST => "information request",
        HEADER_TAG_ADDRESS => "address",
        HEADER_TAG_ENTRY_ADDRESS => "entry address",
        HEADER_TAG_CONSOLE_FLAGS => "console flags",
        HEADER_TAG_FRAMEBUFFER => "framebuffer",
        HEADER_TAG_MODULE_ALIGN => "module alignment",
        HEADER_TAG_EFI_BS => "EFI boot services",
        HEADER_TAG_ENTRY_ADDRESS_EFI32 => "EFI i386 entry address",
        HEADER_TAG_ENTRY_ADDRESS_EFI64 => "EFI amd64 entry address",
        HEADER_TAG_RELOCATABLE => "relocatable",
        _ => "unknown",
    }
}

fn architecture_name(architecture: u32) -> &'static str {
    match architecture {
        ARCHITECTURE_I386 => "i386",
        ARCHITECTURE_MIPS32 => "MIPS",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------
// Wire structures
// ---------------------------------------------------------------------------------------

use crate::wire::{wire_struct, WireField};

wire_struct! {
    /// The fixed start of the multiboot2 header; the header tags follow.
    pub struct HeaderFixed {
        /// [`HEADER_MAGIC`].
        pub magic: u32,
        /// [`ARCHITECTURE_I386`] for every kernel parkboot boots.
        pub architecture: u32,
        /// Bytes of the header, tags included.
        pub header_length: u32,
        /// Makes `magic + architecture + header_length + checksum` zero mod 2^32.
        pub checksum: u32,
    }
}
const _: () = assert!(HeaderFixed::SIZE == 16);
const _: () = assert!(offset_of!(HeaderFixed, magic) == 0);
const _: () = assert!(offset_of!(HeaderFixed, architecture) == 4);
const _: () = assert!(offset_of!(HeaderFixed, header_length) == 8);
const _: () = assert!(offset_of!(HeaderFixed, checksum) == 12);

wire_struct! {
    /// The start of every header tag.
    pub struct HeaderTagHeader {
        pub tag_type: u16,
        /// Bit 0: [`HEADER_TAG_OPTIONAL`].
        pub flags: u16,
        /// Bytes of the tag, this header included (the next tag starts 8-aligned).
        pub size: u32,
    }
}
const _: () = assert!(HeaderTagHeader::SIZE == 8);
const _: () = assert!(offset_of!(HeaderTagHeader, tag_type) == 0);
const _: () = assert!(offset_of!(HeaderTagHeader, flags) == 2);
const _: () = assert!(offset_of!(HeaderTagHeader, size) == 4);

wire_struct! {
    /// Header tag 2: where a kernel that is not loaded as ELF goes (the "a.out kludge").
    pub struct AddressTag {
        pub tag_type: u16,
        pub flags: u16,
        pub size: u32,
        /// Physical address the header's first byte is loaded at.
        pub header_addr: u32,
        /// Physical address of the first loaded byte, or [`LOAD_ADDR_FILE_START`].
        pub load_addr: u32,
        /// End of the loaded file bytes; 0 = to the end of the file.
        pub load_end_addr: u32,
        /// End of the zeroed memory after them; 0 = none.
        pub bss_end_addr: u32,
    }
}
const _: () = assert!(AddressTag::SIZE == 24);
const _: () = assert!(offset_of!(AddressTag, tag_type) == 0);
const _: () = assert!(offset_of!(AddressTag, flags) == 2);
const _: () = assert!(offset_of!(AddressTag, size) == 4);
const _: () = assert!(offset_of!(AddressTag, header_addr) == 8);
const _: () = assert!(offset_of!(AddressTag, load_addr) == 12);
const _: () = assert!(offset_of!(AddressTag, load_end_addr) == 16);
const _: () = assert!(offset_of!(AddressTag, bss_end_addr) == 20);

wire_struct! {
    /// Header tags 3, 8 and 9: an entry point (parkboot uses only tag 3).
    pub struct EntryAddressTag {
        pub tag_type: u16,
        pub flags: u16,
        pub size: u32,
        /// Physical address to jump to.
        pub entry_addr: u32,
    }
}
const _: () = assert!(EntryAddressTag::SIZE == 12);
const _: () = assert!(offset_of!(EntryAddressTag, tag_type) == 0);
const _: () = assert!(offset_of!(EntryAddressTag, flags) == 2);
const _: () = assert!(offset_of!(EntryAddressTag, size) == 4);
const _: () = assert!(offset_of!(EntryAddressTag, entry_addr) == 8);

wire_struct! {
    /// Header tag 4: console requirements (parkboot has a serial console only; the
    /// kernel reads the console's description from the firmware itself).
    pub struct ConsoleFlagsTag {
        pub tag_type: u16,
        pub flags: u16,
        pub size: u32,
        pub console_flags: u32,
    }
}
const _: () = assert!(ConsoleFlagsTag::SIZE == 12);
const _: () = assert!(offset_of!(ConsoleFlagsTag, tag_type) == 0);
const _: () = assert!(offset_of!(ConsoleFlagsTag, flags) == 2);
const _: () = assert!(offset_of!(ConsoleFlagsTag, size) == 4);
const _: () = assert!(offset_of!(ConsoleFlagsTag, console_flags) == 8);

wire_struct! {
    /// Header tag 5: the video mode the kernel prefers.
    pub struct FramebufferHeaderTag {
        pub tag_type: u16,
        pub flags: u16,
        pub size: u32,
        pub width: u32,
        pub height: u32,
        pub depth: u32,
    }
}
const _: () = assert!(FramebufferHeaderTag::SIZE == 20);
const _: () = assert!(offset_of!(FramebufferHeaderTag, tag_type) == 0);
const _: () = assert!(offset_of!(FramebufferHeaderTag, flags) == 2);
const _: () = assert!(offset_of!(FramebufferHeaderTag, size) == 4);
const _: () = assert!(offset_of!(FramebufferHeaderTag, width) == 8);
const _: () = assert!(offset_of!(FramebufferHeaderTag, height) == 12);
const _: () = assert!(offset_of!(FramebufferHeaderTag, depth) == 16);

wire_struct! {
    /// Header tag 10: the kernel may be loaded elsewhere than its addresses say.
    pub struct RelocatableTag {
        pub tag_type: u16,
        pub flags: u16,
        pub size: u32,
        pub min_addr: u32,
        pub max_addr: u32,
        pub align: u32,
        pub preference: u32,
    }
}
const _: () = assert!(RelocatableTag::SIZE == 24);
const _: () = assert!(offset_of!(RelocatableTag, tag_type) == 0);
const _: () = assert!(offset_of!(RelocatableTag, flags) == 2);
const _: () = assert!(offset_of!(RelocatableTag, size) == 4);
const _: () = assert!(offset_of!(RelocatableTag, min_addr) == 8);
const _: () = assert!(offset_of!(RelocatableTag, max_addr) == 12);
const _: () = assert!(offset_of!(RelocatableTag, align) == 16);
const _: () = assert!(offset_of!(RelocatableTag, preference) == 20);

wire_struct! {
    /// The start of the boot information.
    pub struct BootInfoHeader {
        /// Bytes of the boot information, end tag included.
        pub total_size: u32,
        pub reserved: u32,
    }
}
const _: () = assert!(BootInfoHeader::SIZE == 8);
const _: () = assert!(offset_of!(BootInfoHeader, total_size) == 0);
const _: () = assert!(offset_of!(BootInfoHeader, reserved) == 4);

wire_struct! {
    /// The start of every boot information tag.
    pub struct InfoTagHeader {
        pub tag_type: u32,
        /// Bytes of the tag, this header included, without the padding to 8.
        pub size: u32,
    }
}
const _: () = assert!(InfoTagHeader::SIZE == 8);
const _: () = assert!(offset_of!(InfoTagHeader, tag_type) == 0);
const _: () = assert!(offset_of!(InfoTagHeader, size) == 4);

wire_struct! {
    /// Boot information tag 4.
    pub struct BasicMeminfoTag {
        pub tag_type: u32,
        pub size: u32,
        /// KiB of RAM from address 0 (at most 640).
        pub mem_lower: u32,
        /// KiB of RAM from 1 MiB up to the first hole.
        pub mem_upper: u32,
    }
}
const _: () = assert!(BasicMeminfoTag::SIZE == 16);
const _: () = assert!(offset_of!(BasicMeminfoTag, tag_type) == 0);
const _: () = assert!(offset_of!(BasicMeminfoTag, size) == 4);
const _: () = assert!(offset_of!(BasicMeminfoTag, mem_lower) == 8);
const _: () = assert!(offset_of!(BasicMeminfoTag, mem_upper) == 12);

wire_struct! {
    /// Boot information tag 3; a NUL-terminated command line follows.
    pub struct ModuleTag {
        pub tag_type: u32,
        pub size: u32,
        pub mod_start: u32,
        /// One past the module's last byte.
        pub mod_end: u32,
    }
}
const _: () = assert!(ModuleTag::SIZE == 16);
const _: () = assert!(offset_of!(ModuleTag, tag_type) == 0);
const _: () = assert!(offset_of!(ModuleTag, size) == 4);
const _: () = assert!(offset_of!(ModuleTag, mod_start) == 8);
const _: () = assert!(offset_of!(ModuleTag, mod_end) == 12);

wire_struct! {
    /// Boot information tag 6; [`MemoryMapEntry`]s follow.
    pub struct MemoryMapTag {
        pub tag_type: u32,
        pub size: u32,
        /// `size_of::<MemoryMapEntry>()`.
        pub entry_size: u32,
        /// [`MMAP_ENTRY_VERSION`].
        pub entry_version: u32,
    }
}
const _: () = assert!(MemoryMapTag::SIZE == 16);
const _: () = assert!(offset_of!(MemoryMapTag, tag_type) == 0);
const _: () = assert!(offset_of!(MemoryMapTag, size) == 4);
const _: () = assert!(offset_of!(MemoryMapTag, entry_size) == 8);
const _: () = assert!(offset_of!(MemoryMapTag, entry_version) == 12);

wire_struct! {
    /// One range of the memory map tag.
    pub struct MemoryMapEntry {
        pub base_addr: u64,
        pub length: u64,
        /// [`MEMORY_AVAILABLE`], [`MEMORY_RESERVED`], ...
        pub entry_type: u32,
        pub reserved: u32,
    }
}
const _: () = assert!(MemoryMapEntry::SIZE == 24);
const _: () = assert!(offset_of!(MemoryMapEntry, base_addr) == 0);
const _: () = assert!(offset_of!(MemoryMapEntry, length) == 8);
const _: () = assert!(offset_of!(MemoryMapEntry, entry_type) == 16);
const _: () = assert!(offset_of!(MemoryMapEntry, reserved) == 20);

// The parkboot tag is written field by field; a change of its layout in the park crate
// must be mirrored in `InfoBuilder::parkboot_tag`.
const _: () = assert!(size_of::<Multiboot2ParkbootTag>() == 32);
const _: () = assert!(offset_of!(Multiboot2ParkbootTag, tag_type) == 0);
const _: () = assert!(offset_of!(Multiboot2ParkbootTag, size) == 4);
const _: () = assert!(offset_of!(Multiboot2ParkbootTag, park_table) == 8);
const _: () = assert!(offset_of!(Multiboot2ParkbootTag, park_table_version) == 16);
const _: () = assert!(offset_of!(Multiboot2ParkbootTag, iteration) == 20);
const _: () = assert!(offset_of!(Multiboot2ParkbootTag, iterations) == 24);
const _: () = assert!(offset_of!(Multiboot2ParkbootTag, reserved) == 28);

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a kernel cannot be booted, or boot information not built. Every message names
/// the problem and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mb2Error {
    /// No 8-aligned magic with a valid checksum in the first 32 KiB.
    NoHeader,
    /// Magic found, but the four header fields do not sum to zero.
    BadChecksum { offset: usize, sum: u32 },
    /// The header is for another architecture than i386.
    UnsupportedArchitecture { offset: usize, architecture: u32 },
    /// `header_length` too short for the fixed part, or the header runs past the
    /// first 32 KiB or the end of the image.
    BadHeaderLength {
        offset: usize,
        header_length: u32,
        limit: usize,
    },
    /// A header tag's `size` is smaller than its type needs.
    TagTooSmall {
        offset: usize,
        tag_type: u16,
        size: u32,
        min: usize,
    },
    /// A header tag runs past the end of the header.
    TagPastHeader {
        offset: usize,
        tag_type: u16,
        size: u32,
        header_end: usize,
    },
    /// The header's tags end without an end tag.
    MissingEndTag { offset: usize },
    /// The information request asks, not optionally, for a tag parkboot cannot give.
    UnavailableInfo { tag_type: u32 },
    /// A header tag that is not optional asks for something parkboot cannot do.
    RequiredTag { offset: usize, tag_type: u16 },
    /// Address tag: `load_addr` above `header_addr`.
    LoadAddrAboveHeader { load_addr: u32, header_addr: u32 },
    /// Address tag: loading would start before the first byte of the file.
    LoadStartsBeforeFile {
        header_offset: usize,
        header_addr: u32,
        load_addr: u32,
    },
    /// Address tag: `load_end_addr` below the load start.
    LoadEndBeforeStart { load_start: u64, load_end_addr: u32 },
    /// Address tag: the bytes to load run past the end of the file.
    LoadPastFile {
        file_offset: usize,
        file_end: u64,
        file_size: usize,
    },
    /// Address tag: `bss_end_addr` below the end of the loaded bytes.
    BssEndBeforeLoadEnd { load_end: u64, bss_end_addr: u32 },
    /// Address tag: the kernel would reach past 4 GiB.
    LoadAbove4G { start: u64, end: u64 },
    /// An address tag without an entry address tag.
    MissingEntryTag,
    /// No address tag, and the image is not ELF.
    NotElf,
    /// The ELF file header is damaged or not for x86.
    BadElf { problem: &'static str },
    /// The ELF file is for a machine parkboot cannot start.
    ElfMachine { class_bits: u8, machine: u16 },
    /// The ELF file is neither an executable nor a position-independent executable.
    ElfType { e_type: u16 },
    /// `e_phentsize` does not match the class.
    ElfPhentsize { phentsize: u16, expected: usize },
    /// The program header table runs past the end of the file.
    ElfProgramHeadersPastFile {
        start: u64,
        end: u64,
        file_size: usize,
    },
    /// No loadable segment with memory.
    NoLoadSegments,
    /// More loadable segments than [`MAX_SEGMENTS`].
    TooManySegments { max: usize },
    /// A segment's file bytes run past the end of the file.
    SegmentPastFile {
        index: usize,
        dest: u64,
        end: u64,
        file_offset: u64,
        file_end: u64,
        file_size: usize,
    },
    /// A segment has more file bytes than memory.
    SegmentFileLargerThanMemory {
        index: usize,
        file_size: u64,
        mem_size: u64,
    },
    /// A segment reaches past 4 GiB (or past 2^64: `end` is then `u64::MAX`).
    SegmentAbove4G { index: usize, dest: u64, end: u64 },
    /// Two segments share memory.
    SegmentsOverlap {
        first: usize,
        second: usize,
        first_range: (u64, u64),
        second_range: (u64, u64),
    },
    /// The entry point is in no loaded segment (virtual for ELF's `e_entry`, physical
    /// for the entry address tag).
    EntryOutsideSegments { entry: u64 },
    /// The entry point is at or above 4 GiB.
    EntryAbove4G { entry: u64 },
    /// [`LoadPlan::shifted`] on a kernel without a relocatable tag.
    NotRelocatable,
    /// [`LoadPlan::shifted`] would leave the kernel's `[min_addr, max_addr]` window.
    RelocationOutOfRange {
        base: u64,
        end: u64,
        min_addr: u32,
        max_addr: u32,
    },
    /// [`LoadPlan::shifted`] would start the kernel at an address not aligned to its
    /// `align`.
    RelocationMisaligned { base: u64, align: u32 },
    /// Boot information: the buffer is too small.
    InfoBufferTooSmall {
        tag_type: u32,
        needed: usize,
        available: usize,
    },
    /// Boot information: a tag or the whole does not fit the 32-bit size field.
    InfoTooLarge { tag_type: u32 },
    /// Boot information: an RSDP of the wrong length.
    InfoRsdpLength {
        tag_type: u32,
        len: usize,
        expected: usize,
    },
}

/// "ELF segment 2", numbered as the program headers are (as `readelf -l` shows them).
struct SegmentName(usize);

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ELF segment {}", self.0)
    }
}

impl fmt::Display for Mb2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mb2Error::NoHeader => write!(
                f,
                "no multiboot2 header in the first {} KiB",
                HEADER_SEARCH_LIMIT / 1024
            ),
            Mb2Error::BadChecksum { offset, sum } => write!(
                f,
                "multiboot2 header at offset 0x{offset:x}: checksum does not sum to zero (0x{sum:08x})"
            ),
            Mb2Error::UnsupportedArchitecture { offset, architecture } => write!(
                f,
                "multiboot2 header at offset 0x{offset:x}: architecture {architecture} ({}), \
                 parkboot boots only architecture 0 (i386)",
                architecture_name(architecture)
            ),
            Mb2Error::BadHeaderLength { offset, header_length, limit } => write!(
                f,
                "multiboot2 header at offset 0x{offset:x}: header_length 0x{header_length:x} is \
                 shorter than 0x{:x} bytes or runs past 0x{limit:x} (the first 32 KiB or the \
                 end of the image)",
                HeaderFixed::SIZE
            ),
            Mb2Error::TagTooSmall { offset, tag_type, size, min } => write!(
                f,
                "multiboot2 header tag {tag_type} ({}) at offset 0x{offset:x}: size {size} is \
                 less than the {min} bytes it needs",
                header_tag_name(tag_type)
            ),
            Mb2Error::TagPastHeader { offset, tag_type, size, header_end } => write!(
                f,
                "multiboot2 header tag {tag_type} ({}) at offset 0x{offset:x}: size {size} runs \
                 past the end of the header at 0x{header_end:x}",
                header_tag_name(tag_type)
            ),
            Mb2Error::MissingEndTag { offset } => write!(
                f,
                "multiboot2 header at offset 0x{offset:x}: the tags end without an end tag"
            ),
            Mb2Error::UnavailableInfo { tag_type } => write!(
                f,
                "the kernel requires boot information tag {tag_type} ({}), which parkboot does \
                 not provide",
                info_tag_name(tag_type)
            ),
            Mb2Error::RequiredTag { offset, tag_type } => {
                let why = match tag_type {
                    HEADER_TAG_FRAMEBUFFER => "parkboot has no framebuffer",
                    HEADER_TAG_EFI_BS => "parkboot is not an EFI loader",
                    _ => "parkboot does not know this tag type",
                };
                write!(
                    f,
                    "multiboot2 header tag {tag_type} ({}) at offset 0x{offset:x} is not \
                     optional, and {why}",
                    header_tag_name(tag_type)
                )
            }
            Mb2Error::LoadAddrAboveHeader { load_addr, header_addr } => write!(
                f,
                "multiboot2 address tag: load_addr 0x{load_addr:x} is above header_addr \
                 0x{header_addr:x}"
            ),
            Mb2Error::LoadStartsBeforeFile { header_offset, header_addr, load_addr } => write!(
                f,
                "multiboot2 address tag: the header is at file offset 0x{header_offset:x}, so \
                 header_addr 0x{header_addr:x} and load_addr 0x{load_addr:x} start loading \
                 before the first byte of the file"
            ),
            Mb2Error::LoadEndBeforeStart { load_start, load_end_addr } => write!(
                f,
                "multiboot2 address tag: load_end_addr 0x{load_end_addr:x} is below the load \
                 start 0x{load_start:x}"
            ),
            Mb2Error::LoadPastFile { file_offset, file_end, file_size } => write!(
                f,
                "multiboot2 address tag: file bytes 0x{file_offset:x}-0x{file_end:x} run past \
                 the end of the file (file size 0x{file_size:x})"
            ),
            Mb2Error::BssEndBeforeLoadEnd { load_end, bss_end_addr } => write!(
                f,
                "multiboot2 address tag: bss_end_addr 0x{bss_end_addr:x} is below the end of \
                 the loaded bytes 0x{load_end:x}"
            ),
            Mb2Error::LoadAbove4G { start, end } => write!(
                f,
                "multiboot2 address tag: the kernel (0x{start:x}-0x{end:x}) reaches past 4 GiB"
            ),
            Mb2Error::MissingEntryTag => write!(
                f,
                "the multiboot2 header has an address tag but no entry address tag"
            ),
            Mb2Error::NotElf => write!(
                f,
                "the multiboot2 header has no address tag and the kernel is not an ELF file"
            ),
            Mb2Error::BadElf { problem } => write!(f, "ELF file header: {problem}"),
            Mb2Error::ElfMachine { class_bits, machine } => write!(
                f,
                "ELF{class_bits} file for machine {machine}, parkboot boots only x86 (ELF32 \
                 machine 3, ELF64 machine 62)"
            ),
            Mb2Error::ElfType { e_type } => write!(
                f,
                "ELF file type {e_type} is not an executable (2) or position-independent \
                 executable (3)"
            ),
            Mb2Error::ElfPhentsize { phentsize, expected } => write!(
                f,
                "ELF program header size e_phentsize is {phentsize}, expected {expected}"
            ),
            Mb2Error::ElfProgramHeadersPastFile { start, end, file_size } => write!(
                f,
                "ELF program header table (0x{start:x}-0x{end:x}) runs past the end of the file \
                 (file size 0x{file_size:x})"
            ),
            Mb2Error::NoLoadSegments => write!(f, "the ELF file has no loadable segment"),
            Mb2Error::TooManySegments { max } => write!(
                f,
                "the ELF file has more than {max} loadable segments"
            ),
            Mb2Error::SegmentPastFile { index, dest, end, file_offset, file_end, file_size } => {
                write!(
                    f,
                    "{} (0x{dest:x}-0x{end:x}) runs past the end of the file: file bytes \
                     0x{file_offset:x}-0x{file_end:x} (file size 0x{file_size:x})",
                    SegmentName(index)
                )
            }
            Mb2Error::SegmentFileLargerThanMemory { index, file_size, mem_size } => write!(
                f,
                "{} has more bytes in the file (0x{file_size:x}) than in memory (0x{mem_size:x})",
                SegmentName(index)
            ),
            Mb2Error::SegmentAbove4G { index, dest, end } => write!(
                f,
                "{} (0x{dest:x}-0x{end:x}) reaches past 4 GiB; the kernel is entered with \
                 paging off",
                SegmentName(index)
            ),
            Mb2Error::SegmentsOverlap { first, second, first_range, second_range } => write!(
                f,
                "{} (0x{:x}-0x{:x}) and {} (0x{:x}-0x{:x}) overlap",
                SegmentName(first),
                first_range.0,
                first_range.1,
                SegmentName(second),
                second_range.0,
                second_range.1
            ),
            Mb2Error::EntryOutsideSegments { entry } => write!(
                f,
                "the kernel's entry point 0x{entry:x} is not inside a loaded segment"
            ),
            Mb2Error::EntryAbove4G { entry } => write!(
                f,
                "the kernel's entry point 0x{entry:x} is above 4 GiB; the kernel is entered with \
                 paging off"
            ),
            Mb2Error::NotRelocatable => write!(
                f,
                "the kernel has no multiboot2 relocatable tag, so it cannot be moved"
            ),
            Mb2Error::RelocationOutOfRange { base, end, min_addr, max_addr } => write!(
                f,
                "moving the kernel to 0x{base:x}-0x{end:x} leaves its relocatable window \
                 0x{min_addr:x}-0x{max_addr:x}"
            ),
            Mb2Error::RelocationMisaligned { base, align } => write!(
                f,
                "moving the kernel to 0x{base:x} breaks its relocatable alignment 0x{align:x}"
            ),
            Mb2Error::InfoBufferTooSmall { tag_type, needed, available } => write!(
                f,
                "multiboot2 boot information: tag {tag_type} ({}) needs the buffer to hold \
                 {needed} bytes, it has {available}",
                info_tag_name(tag_type)
            ),
            Mb2Error::InfoTooLarge { tag_type } => write!(
                f,
                "multiboot2 boot information: tag {tag_type} ({}) is larger than 4 GiB",
                info_tag_name(tag_type)
            ),
            Mb2Error::InfoRsdpLength { tag_type, len, expected } => write!(
                f,
                "multiboot2 boot information: tag {tag_type} ({}) needs a {expected}-byte RSDP, \
                 got {len} bytes",
                info_tag_name(tag_type)
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------

fn header_sum(h: &HeaderFixed) -> u32 {
    h.magic
        .wrapping_add(h.architecture)
        .wrapping_add(h.header_length)
        .wrapping_add(h.checksum)
}

/// What a header search found: the first header with a valid checksum, or failing
/// that the first magic whose checksum was wrong (for the error message).
fn search_header(image: &[u8]) -> Result<(usize, HeaderFixed), Mb2Error> {
    let mut bad_checksum = None;
    // Only offsets whose fixed part lies within the first 32 KiB are candidates.
    let last = HEADER_SEARCH_LIMIT - HeaderFixed::SIZE;
    for offset in (0..=last).step_by(HEADER_ALIGN) {
        let Some(header) = HeaderFixed::read_at(image, offset) else {
            break;
        };
        if header.magic == HEADER_MAGIC {
            let sum = header_sum(&header);
            if sum == 0 {
                return Ok((offset, header));
            }
            bad_checksum.get_or_insert(Mb2Error::BadChecksum { offset, sum });
        }
    }
    Err(bad_checksum.unwrap_or(Mb2Error::NoHeader))
}

/// File offset of the kernel's multiboot2 header: the first 8-aligned magic in the first
/// 32 KiB whose checksum is right (whatever its architecture). Used to tell multiboot2
/// kernels from others; [`plan`] checks the rest.
pub fn find_header(image: &[u8]) -> Option<usize> {
    search_header(image).ok().map(|(offset, _)| offset)
}

/// Which boot information tag types the kernel asked for (information request tag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestedTags {
    /// Bit `n` set: type `n` requested. Types from 64 on are not defined by the
    /// specification; a required one is refused before it would be recorded here.
    bits: u64,
}

impl RequestedTags {
    const CAPACITY: u32 = u64::BITS;

    fn insert(&mut self, tag_type: u32) {
        if tag_type < Self::CAPACITY {
            self.bits |= 1 << tag_type;
        }
    }

    pub fn contains(&self, tag_type: u32) -> bool {
        tag_type < Self::CAPACITY && self.bits & (1 << tag_type) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The requested types, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..Self::CAPACITY).filter(move |&t| self.contains(t))
    }
}

/// Where a relocatable kernel may be moved (header tag 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocatable {
    /// Lowest address any part of the kernel may occupy.
    pub min_addr: u32,
    /// The kernel's end (exclusive) must not lie above this.
    pub max_addr: u32,
    /// The kernel's lowest address must be a multiple of this (0 or 1: any).
    pub align: u32,
    pub preference: RelocPreference,
}

/// The relocatable tag's hint for where to put the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocPreference {
    /// No preference (also for values the specification does not define: a hint
    /// parkboot does not understand is no reason to refuse the kernel).
    NoPreference,
    Lowest,
    Highest,
}

impl Relocatable {
    /// Whether a kernel at `base..end` satisfies the window and alignment.
    pub fn allows(&self, base: u64, end: u64) -> bool {
        self.check(base, end).is_ok()
    }

    fn check(&self, base: u64, end: u64) -> Result<(), Mb2Error> {
        if base < u64::from(self.min_addr) || end > u64::from(self.max_addr) {
            return Err(Mb2Error::RelocationOutOfRange {
                base,
                end,
                min_addr: self.min_addr,
                max_addr: self.max_addr,
            });
        }
        if self.align > 1 && !base.is_multiple_of(u64::from(self.align)) {
            return Err(Mb2Error::RelocationMisaligned {
                base,
                align: self.align,
            });
        }
        Ok(())
    }
}

/// What the header tags said.
#[derive(Default)]
struct HeaderTags {
    address: Option<AddressTag>,
    entry: Option<u32>,
    relocatable: Option<Relocatable>,
    module_alignment: bool,
    requested: RequestedTags,
    console_flags: Option<u32>,
}

/// Reads a tag of type `T` at `offset`, refusing a tag smaller than `T`.
fn read_tag<T>(
    image: &[u8],
    offset: usize,
    tag: &HeaderTagHeader,
    min: usize,
    read: fn(&[u8], usize) -> Option<T>,
) -> Result<T, Mb2Error> {
    let too_small = Mb2Error::TagTooSmall {
        offset,
        tag_type: tag.tag_type,
        size: tag.size,
        min,
    };
    if (tag.size as usize) < min {
        return Err(too_small);
    }
    read(image, offset).ok_or(too_small)
}

fn parse_header_tags(
    image: &[u8],
    offset: usize,
    header: &HeaderFixed,
) -> Result<HeaderTags, Mb2Error> {
    let limit = image.len().min(HEADER_SEARCH_LIMIT);
    let bad_length = Mb2Error::BadHeaderLength {
        offset,
        header_length: header.header_length,
        limit,
    };
    let header_end = offset
        .checked_add(header.header_length as usize)
        .ok_or(bad_length)?;
    if (header.header_length as usize) < HeaderFixed::SIZE || header_end > limit {
        return Err(bad_length);
    }
    // Only the header's own bytes are read from here on.
    let bytes = image.get(..header_end).ok_or(bad_length)?;

    let mut tags = HeaderTags::default();
    let mut at = offset + HeaderFixed::SIZE;
    loop {
        at = at
            .checked_next_multiple_of(TAG_ALIGN)
            .ok_or(Mb2Error::MissingEndTag { offset })?;
        let Some(tag) = HeaderTagHeader::read_at(bytes, at) else {
            return Err(Mb2Error::MissingEndTag { offset });
        };
        if (tag.size as usize) < HeaderTagHeader::SIZE {
            return Err(Mb2Error::TagTooSmall {
                offset: at,
                tag_type: tag.tag_type,
                size: tag.size,
                min: HeaderTagHeader::SIZE,
            });
        }
        let tag_end = at
            .checked_add(tag.size as usize)
            .filter(|&e| e <= header_end);
        let Some(tag_end) = tag_end else {
            return Err(Mb2Error::TagPastHeader {
                offset: at,
                tag_type: tag.tag_type,
                size: tag.size,
                header_end,
            });
        };
        let optional = tag.flags & HEADER_TAG_OPTIONAL != 0;
        match tag.tag_type {
            HEADER_TAG_END => return Ok(tags),
            HEADER_TAG_INFORMATION_REQUEST => {
                let tag_bytes = bytes.get(..tag_end).unwrap_or_default();
                let mut field = at + HeaderTagHeader::SIZE;
                while let Some(requested) = u32::read_at(tag_bytes, field) {
                    if !optional && !PROVIDED_TAGS.contains(&requested) {
                        return Err(Mb2Error::UnavailableInfo {
                            tag_type: requested,
                        });
                    }
                    tags.requested.insert(requested);
                    field += size_of::<u32>();
                }
            }
            HEADER_TAG_ADDRESS => {
                tags.address = Some(read_tag(
                    bytes,
                    at,
                    &tag,
                    AddressTag::SIZE,
                    AddressTag::read_at,
                )?);
            }
            HEADER_TAG_ENTRY_ADDRESS => {
                let t = read_tag(
                    bytes,
                    at,
                    &tag,
                    EntryAddressTag::SIZE,
                    EntryAddressTag::read_at,
                )?;
                tags.entry = Some(t.entry_addr);
            }
            HEADER_TAG_CONSOLE_FLAGS => {
                let t = read_tag(
                    bytes,
                    at,
                    &tag,
                    ConsoleFlagsTag::SIZE,
                    ConsoleFlagsTag::read_at,
                )?;
                tags.console_flags = Some(t.console_flags);
            }
            HEADER_TAG_FRAMEBUFFER | HEADER_TAG_EFI_BS => {
                if !optional {
                    return Err(Mb2Error::RequiredTag {
                        offset: at,
                        tag_type: tag.tag_type,
                    });
                }
            }
            HEADER_TAG_MODULE_ALIGN => tags.module_alignment = true,
            // EFI entry points: parkboot is not an EFI loader and never uses them.
            HEADER_TAG_ENTRY_ADDRESS_EFI32 | HEADER_TAG_ENTRY_ADDRESS_EFI64 => {}
            HEADER_TAG_RELOCATABLE => {
                let t = read_tag(
                    bytes,
                    at,
                    &tag,
                    RelocatableTag::SIZE,
                    RelocatableTag::read_at,
                )?;
                let preference = match t.preference {
                    RELOC_PREFERENCE_LOWEST => RelocPreference::Lowest,
                    RELOC_PREFERENCE_HIGHEST => RelocPreference::Highest,
                    // RELOC_PREFERENCE_NONE, and values the specification does not define.
                    _ => RelocPreference::NoPreference,
                };
                tags.relocatable = Some(Relocatable {
                    min_addr: t.min_addr,
                    max_addr: t.max_addr,
                    align: t.align,
                    preference,
                });
            }
            _ => {
                if !optional {
                    return Err(Mb2Error::RequiredTag {
                        offset: at,
                        tag_type: tag.tag_type,
                    });
                }
            }
        }
        at = tag_end;
    }
}
