//! Multiboot2 (specification 2.0, architecture i386): what parkboot needs to boot kernels
//! that expect a multiboot2 loader, such as the Xen hypervisor.
//!
//! Everything here is a pure function over bytes, with no allocation and no hardware:
//!
//! * [`plan`] finds and checks the kernel's multiboot2 header and turns the image (ELF32,
//!   ELF64 or the address-tag "a.out kludge") into a [`LoadPlan`]: which file bytes go to
//!   which physical address, how much to zero after them, the 32-bit entry point, and
//!   the boot information the kernel asked for. The bare-metal side checks the exact
//!   ranges against its memory map, copies, and enters the kernel.
//! * [`gzip_inflated_size`] checks a gzip-compressed kernel (Debian ships Xen as
//!   `xen-*.gz`) in a first pass that keeps no output and says how large it inflates;
//!   [`inflate_gzip`] then unpacks it into a buffer of that size, checking its CRC32 and
//!   size again. No buffer is ever sized from the trailer alone.
//! * [`InfoBuilder`] lays out the boot information the kernel gets in `ebx`.
//!
//! Every structure read from or written to the wire is a `#[repr(C)]` struct whose
//! field offsets are checked at compile time and are the only source of byte offsets;
//! fields are moved one by one at those offsets, so untrusted bytes are never
//! reinterpreted in place and buffers need no particular alignment. Bad input gives
//! an [`Mb2Error`] that says what is wrong and where, never a panic.

use core::fmt;
use core::mem::{offset_of, size_of};
use core::ops::Range;

use elf::endian::LittleEndian;
use elf::file::{Class, FileHeader};
use elf::parse::ParseAt;
use elf::segment::{ProgramHeader, SegmentTable};
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;
use park::reentry::{Multiboot2ParkbootTag, MULTIBOOT2_TAG_TYPE_PARKBOOT};

use crate::memory::{MemoryMap, ReportAs, ONE_MIB};

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
/// The kernel is entered with paging off, so everything it gets must lie below this.
pub const FOUR_GIB: u64 = 1 << 32;
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

wire_struct! {
    /// The fixed start of a gzip member (RFC 1952).
    pub struct GzipHeader {
        pub id1: u8,
        pub id2: u8,
        /// [`GZIP_METHOD_DEFLATE`].
        pub method: u8,
        /// `GZIP_F*` bits saying which optional fields follow.
        pub flags: u8,
        pub mtime: u32,
        pub extra_flags: u8,
        pub os: u8,
    }
}
// The wire header is 10 bytes; the Rust struct pads to 12 after `os`.
const GZIP_HEADER_BYTES: usize = offset_of!(GzipHeader, os) + size_of::<u8>();
const _: () = assert!(GZIP_HEADER_BYTES == 10);
const _: () = assert!(offset_of!(GzipHeader, id1) == 0);
const _: () = assert!(offset_of!(GzipHeader, id2) == 1);
const _: () = assert!(offset_of!(GzipHeader, method) == 2);
const _: () = assert!(offset_of!(GzipHeader, flags) == 3);
const _: () = assert!(offset_of!(GzipHeader, mtime) == 4);
const _: () = assert!(offset_of!(GzipHeader, extra_flags) == 8);
const _: () = assert!(offset_of!(GzipHeader, os) == 9);

wire_struct! {
    /// The end of a gzip member.
    pub struct GzipTrailer {
        /// CRC32 of the uncompressed data.
        pub crc32: u32,
        /// Uncompressed size mod 2^32.
        pub isize: u32,
    }
}
const _: () = assert!(GzipTrailer::SIZE == 8);
const _: () = assert!(offset_of!(GzipTrailer, crc32) == 0);
const _: () = assert!(offset_of!(GzipTrailer, isize) == 4);

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

fn align_up(value: usize, align: usize) -> Option<usize> {
    let mask = align.checked_sub(1)?;
    Some(value.checked_add(mask)? & !mask)
}

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
    /// Gzip: the first two bytes are not 1f 8b.
    GzipBadMagic,
    /// Gzip: a compression method other than deflate.
    GzipMethod { method: u8 },
    /// Gzip: reserved flag bits set (RFC 1952 says to refuse).
    GzipReservedFlags { flags: u8 },
    /// Gzip: the data ends inside `what`.
    GzipTruncated { what: &'static str },
    /// Gzip: the deflate stream runs to the end of the data (`len` bytes) without its
    /// last block: the data is cut short or corrupt.
    GzipStreamUnfinished { len: usize },
    /// Gzip: the data inflates to more than [`GZIP_MAX_INFLATED`] bytes.
    GzipTooLarge { limit: u64 },
    /// Gzip: the header CRC16 (FHCRC) does not match.
    GzipHeaderCrc { stored: u16, computed: u16 },
    /// Gzip: the deflate stream is damaged at this byte of the gzip data.
    GzipCorrupt { at: usize },
    /// Gzip: the inflated data's CRC32 differs from the trailer's.
    GzipCrcMismatch { stored: u32, computed: u32 },
    /// Gzip: the inflated size differs from the trailer's ISIZE.
    GzipSizeMismatch { stored: u32, actual: u64 },
    /// Gzip: the data inflates to more than the output buffer holds (size the buffer
    /// with [`gzip_inflated_size`]).
    GzipOutputTooSmall { available: usize },
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
            Mb2Error::GzipBadMagic => write!(f, "not gzip data: the first bytes are not 1f 8b"),
            Mb2Error::GzipMethod { method } => write!(
                f,
                "gzip compression method {method} is not deflate (8)"
            ),
            Mb2Error::GzipReservedFlags { flags } => write!(
                f,
                "gzip header flags 0x{flags:02x} have reserved bits set"
            ),
            Mb2Error::GzipTruncated { what } => write!(f, "gzip data truncated in the {what}"),
            Mb2Error::GzipHeaderCrc { stored, computed } => write!(
                f,
                "gzip header CRC 0x{stored:04x} does not match the header (0x{computed:04x})"
            ),
            Mb2Error::GzipStreamUnfinished { len } => write!(
                f,
                "gzip data corrupt or truncated: the deflate stream runs to the end of the {len} bytes without its last block"
            ),
            Mb2Error::GzipTooLarge { limit } => write!(
                f,
                "gzip data inflates to more than {limit} bytes, more than any kernel parkboot boots"
            ),
            Mb2Error::GzipCorrupt { at } => write!(f, "gzip data corrupt at byte {at}"),
            Mb2Error::GzipCrcMismatch { stored, computed } => write!(
                f,
                "gzip data corrupt: CRC mismatch: the trailer says 0x{stored:08x}, the inflated data has \
                 0x{computed:08x}"
            ),
            Mb2Error::GzipSizeMismatch { stored, actual } => write!(
                f,
                "gzip data corrupt: the stream inflates to {actual} bytes, the trailer's ISIZE says {stored}"
            ),
            Mb2Error::GzipOutputTooSmall { available } => write!(
                f,
                "gzip data inflates to more than the {available}-byte output buffer"
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
        at = align_up(at, TAG_ALIGN).ok_or(Mb2Error::MissingEndTag { offset })?;
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

// ---------------------------------------------------------------------------------------
// Load plan
// ---------------------------------------------------------------------------------------

/// How the kernel's bytes were laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Elf32,
    Elf64,
    /// Raw bytes placed by the header's address tag.
    AoutKludge,
}

/// One range to load: `file_size` bytes from `file_offset` of the image to physical
/// `dest`, then zeros up to `dest + mem_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub dest: u64,
    pub file_offset: usize,
    pub file_size: usize,
    /// Never less than `file_size`.
    pub mem_size: u64,
}

impl Segment {
    /// One past the last byte of memory the segment occupies.
    pub fn end(&self) -> u64 {
        self.dest.saturating_add(self.mem_size)
    }

    /// The image bytes to copy to `dest`.
    pub fn file_range(&self) -> Range<usize> {
        self.file_offset..self.file_offset.saturating_add(self.file_size)
    }

    /// The physical range to zero after the copied bytes.
    pub fn zero_range(&self) -> Range<u64> {
        self.dest.saturating_add(self.file_size as u64)..self.end()
    }
}

/// Everything the bare-metal side needs to load and enter a multiboot2 kernel. Every
/// range is checked against the image and lies below 4 GiB; overlap with reserved
/// memory is for the caller to check against its memory map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    pub kind: ImageKind,
    /// File offset of the multiboot2 header.
    pub header_offset: usize,
    /// Physical address to enter in 32-bit protected mode, inside a segment.
    pub entry: u32,
    /// Ordered as in the file; no two overlap.
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// `Some` when the kernel may be moved with [`LoadPlan::shifted`].
    pub relocatable: Option<Relocatable>,
    /// The kernel wants modules page-aligned (header tag 6).
    pub module_alignment: bool,
    /// The boot information tags the kernel asked for.
    pub requested: RequestedTags,
    /// Header tag 4, if present (parkboot has only a serial console to offer).
    pub console_flags: Option<u32>,
}

impl LoadPlan {
    /// The lowest and one past the highest physical address of the segments.
    pub fn image_range(&self) -> Range<u64> {
        let start = self.segments.iter().map(|s| s.dest).min().unwrap_or(0);
        let end = self.segments.iter().map(Segment::end).max().unwrap_or(0);
        start..end
    }

    /// The same plan with the kernel moved by `delta` bytes, for a relocatable kernel
    /// whose own addresses clash with memory parkboot cannot give. The moved kernel must
    /// stay within its `[min_addr, max_addr]` window, start aligned to its `align`, and
    /// keep its entry point below 4 GiB.
    pub fn shifted(&self, delta: i64) -> Result<LoadPlan, Mb2Error> {
        let reloc = self.relocatable.ok_or(Mb2Error::NotRelocatable)?;
        let range = self.image_range();
        let out_of_range = Mb2Error::RelocationOutOfRange {
            base: range.start,
            end: range.end,
            min_addr: reloc.min_addr,
            max_addr: reloc.max_addr,
        };
        let base = range.start.checked_add_signed(delta).ok_or(out_of_range)?;
        let end = range.end.checked_add_signed(delta).ok_or(out_of_range)?;
        reloc.check(base, end)?;
        let mut moved = self.clone();
        for segment in moved.segments.iter_mut() {
            segment.dest = segment.dest.checked_add_signed(delta).ok_or(out_of_range)?;
        }
        let entry = u64::from(self.entry)
            .checked_add_signed(delta)
            .ok_or(out_of_range)?;
        moved.entry = u32::try_from(entry).map_err(|_| Mb2Error::EntryAbove4G { entry })?;
        Ok(moved)
    }
}

/// Checks the multiboot2 header of `image` (a whole, already inflated kernel) and says
/// where its bytes go and where it is entered.
///
/// With an address tag the image is raw bytes placed by that tag (an ELF file with one
/// too); otherwise it must be ELF32 (x86) or ELF64 (x86-64) and its `PT_LOAD` segments go
/// to their physical addresses (`p_paddr`). The ELF entry point `e_entry` is virtual and
/// translated to physical through the segment containing it, as GRUB does, so kernels
/// linked at a high virtual address boot too; an entry address tag overrides it.
pub fn plan(image: &[u8]) -> Result<LoadPlan, Mb2Error> {
    let (header_offset, header) = search_header(image)?;
    if header.architecture != ARCHITECTURE_I386 {
        return Err(Mb2Error::UnsupportedArchitecture {
            offset: header_offset,
            architecture: header.architecture,
        });
    }
    let tags = parse_header_tags(image, header_offset, &header)?;

    let (kind, segments, entry) = match tags.address {
        Some(address) => {
            let segment = aout_segment(image, header_offset, &address)?;
            let entry = tags.entry.ok_or(Mb2Error::MissingEntryTag)?;
            let mut segments = heapless::Vec::new();
            segments
                .push(segment)
                .map_err(|_| Mb2Error::TooManySegments { max: MAX_SEGMENTS })?;
            let entry = physical_entry(&segments, u64::from(entry))?;
            (ImageKind::AoutKludge, segments, entry)
        }
        None => {
            let layout = elf_layout(image)?;
            let entry = match tags.entry {
                Some(entry) => physical_entry(&layout.segments, u64::from(entry))?,
                None => layout.physical_entry()?,
            };
            (layout.kind, layout.segments, entry)
        }
    };

    Ok(LoadPlan {
        kind,
        header_offset,
        entry,
        segments,
        relocatable: tags.relocatable,
        module_alignment: tags.module_alignment,
        requested: tags.requested,
        console_flags: tags.console_flags,
    })
}

/// Checks a physical entry point: inside a segment and below 4 GiB.
fn physical_entry(segments: &[Segment], entry: u64) -> Result<u32, Mb2Error> {
    if !segments.iter().any(|s| (s.dest..s.end()).contains(&entry)) {
        return Err(Mb2Error::EntryOutsideSegments { entry });
    }
    u32::try_from(entry).map_err(|_| Mb2Error::EntryAbove4G { entry })
}

/// The single range the address tag describes.
fn aout_segment(image: &[u8], header_offset: usize, tag: &AddressTag) -> Result<Segment, Mb2Error> {
    let (file_offset, dest) = if tag.load_addr == LOAD_ADDR_FILE_START {
        let before_file = Mb2Error::LoadStartsBeforeFile {
            header_offset,
            header_addr: tag.header_addr,
            load_addr: tag.load_addr,
        };
        let dest = u64::from(tag.header_addr)
            .checked_sub(header_offset as u64)
            .ok_or(before_file)?;
        (0, dest)
    } else {
        if tag.load_addr > tag.header_addr {
            return Err(Mb2Error::LoadAddrAboveHeader {
                load_addr: tag.load_addr,
                header_addr: tag.header_addr,
            });
        }
        let before_header = (tag.header_addr - tag.load_addr) as usize;
        let file_offset =
            header_offset
                .checked_sub(before_header)
                .ok_or(Mb2Error::LoadStartsBeforeFile {
                    header_offset,
                    header_addr: tag.header_addr,
                    load_addr: tag.load_addr,
                })?;
        (file_offset, u64::from(tag.load_addr))
    };

    let file_size = if tag.load_end_addr == 0 {
        image.len().saturating_sub(file_offset)
    } else {
        let size =
            u64::from(tag.load_end_addr)
                .checked_sub(dest)
                .ok_or(Mb2Error::LoadEndBeforeStart {
                    load_start: dest,
                    load_end_addr: tag.load_end_addr,
                })?;
        let file_end = (file_offset as u64).saturating_add(size);
        if file_end > image.len() as u64 {
            return Err(Mb2Error::LoadPastFile {
                file_offset,
                file_end,
                file_size: image.len(),
            });
        }
        size as usize
    };

    let load_end = dest.saturating_add(file_size as u64);
    let mem_size = if tag.bss_end_addr == 0 {
        file_size as u64
    } else {
        u64::from(tag.bss_end_addr)
            .checked_sub(dest)
            .filter(|&m| m >= file_size as u64)
            .ok_or(Mb2Error::BssEndBeforeLoadEnd {
                load_end,
                bss_end_addr: tag.bss_end_addr,
            })?
    };
    let end = dest.saturating_add(mem_size);
    if end > FOUR_GIB {
        return Err(Mb2Error::LoadAbove4G { start: dest, end });
    }
    Ok(Segment {
        dest,
        file_offset,
        file_size,
        mem_size,
    })
}

/// An ELF file's loadable segments with their virtual addresses, for the entry point.
struct ElfLayout {
    kind: ImageKind,
    e_entry: u64,
    segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// For each entry of `segments`: its program header number and `p_vaddr`.
    headers: heapless::Vec<(usize, u64), MAX_SEGMENTS>,
}

impl ElfLayout {
    /// `e_entry` translated from virtual to physical through its segment.
    fn physical_entry(&self) -> Result<u32, Mb2Error> {
        let outside = Mb2Error::EntryOutsideSegments {
            entry: self.e_entry,
        };
        let (segment, vaddr) = self
            .segments
            .iter()
            .zip(self.headers.iter().map(|&(_, vaddr)| vaddr))
            .find(|&(s, v)| self.e_entry >= v && self.e_entry - v < s.mem_size)
            .ok_or(outside)?;
        let entry = segment
            .dest
            .checked_add(self.e_entry - vaddr)
            .ok_or(outside)?;
        u32::try_from(entry).map_err(|_| Mb2Error::EntryAbove4G { entry })
    }
}

fn elf_layout(image: &[u8]) -> Result<ElfLayout, Mb2Error> {
    let ident = image.get(..elf::abi::EI_NIDENT).ok_or(Mb2Error::NotElf)?;
    if ident.get(..elf::abi::ELFMAGIC.len()) != Some(&elf::abi::ELFMAGIC[..]) {
        return Err(Mb2Error::NotElf);
    }
    let ident = elf::file::parse_ident::<LittleEndian>(ident).map_err(|e| Mb2Error::BadElf {
        problem: match e {
            elf::ParseError::UnsupportedElfClass(_) => "class is neither 32-bit nor 64-bit",
            elf::ParseError::UnsupportedElfEndianness(_) => "not little-endian",
            elf::ParseError::UnsupportedVersion(_) => "unsupported ELF version",
            _ => "bad identification bytes",
        },
    })?;
    let (class_bits, tail_size, machine, kind) = match ident.1 {
        Class::ELF32 => (
            32,
            elf::file::ELF32_EHDR_TAILSIZE,
            elf::abi::EM_386,
            ImageKind::Elf32,
        ),
        Class::ELF64 => (
            64,
            elf::file::ELF64_EHDR_TAILSIZE,
            elf::abi::EM_X86_64,
            ImageKind::Elf64,
        ),
    };
    let class = ident.1;
    let tail_end = elf::abi::EI_NIDENT + tail_size;
    let tail = image
        .get(elf::abi::EI_NIDENT..tail_end)
        .ok_or(Mb2Error::BadElf {
            problem: "the file ends inside the file header",
        })?;
    let ehdr = FileHeader::parse_tail(ident, tail).map_err(|_| Mb2Error::BadElf {
        problem: "unreadable file header",
    })?;
    if ehdr.e_machine != machine {
        return Err(Mb2Error::ElfMachine {
            class_bits,
            machine: ehdr.e_machine,
        });
    }
    if ehdr.e_type != elf::abi::ET_EXEC && ehdr.e_type != elf::abi::ET_DYN {
        return Err(Mb2Error::ElfType {
            e_type: ehdr.e_type,
        });
    }
    if ehdr.e_phnum == elf::abi::PN_XNUM {
        return Err(Mb2Error::TooManySegments { max: MAX_SEGMENTS });
    }
    let entsize = ProgramHeader::size_for(class);
    if usize::from(ehdr.e_phentsize) != entsize {
        return Err(Mb2Error::ElfPhentsize {
            phentsize: ehdr.e_phentsize,
            expected: entsize,
        });
    }
    let table_len = (entsize as u64) * u64::from(ehdr.e_phnum);
    let table_end = ehdr.e_phoff.saturating_add(table_len);
    let past_file = Mb2Error::ElfProgramHeadersPastFile {
        start: ehdr.e_phoff,
        end: table_end,
        file_size: image.len(),
    };
    if table_end > image.len() as u64 {
        return Err(past_file);
    }
    let table = image
        .get(ehdr.e_phoff as usize..table_end as usize)
        .ok_or(past_file)?;
    let phdrs = SegmentTable::new(LittleEndian, class, table);

    let mut segments = heapless::Vec::new();
    let mut headers = heapless::Vec::new();
    for index in 0..usize::from(ehdr.e_phnum) {
        let ph = phdrs.get(index).map_err(|_| past_file)?;
        if ph.p_type != elf::abi::PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let segment = elf_segment(image, index, &ph)?;
        segments
            .push(segment)
            .map_err(|_| Mb2Error::TooManySegments { max: MAX_SEGMENTS })?;
        headers
            .push((index, ph.p_vaddr))
            .map_err(|_| Mb2Error::TooManySegments { max: MAX_SEGMENTS })?;
    }
    if segments.is_empty() {
        return Err(Mb2Error::NoLoadSegments);
    }
    check_overlaps(&segments, &headers)?;
    Ok(ElfLayout {
        kind,
        e_entry: ehdr.e_entry,
        segments,
        headers,
    })
}

fn elf_segment(image: &[u8], index: usize, ph: &ProgramHeader) -> Result<Segment, Mb2Error> {
    let dest = ph.p_paddr;
    let end = dest.checked_add(ph.p_memsz);
    if ph.p_filesz > ph.p_memsz {
        return Err(Mb2Error::SegmentFileLargerThanMemory {
            index,
            file_size: ph.p_filesz,
            mem_size: ph.p_memsz,
        });
    }
    let file_end = ph.p_offset.checked_add(ph.p_filesz);
    match file_end {
        Some(file_end) if file_end <= image.len() as u64 => {}
        _ => {
            return Err(Mb2Error::SegmentPastFile {
                index,
                dest,
                end: end.unwrap_or(u64::MAX),
                file_offset: ph.p_offset,
                file_end: file_end.unwrap_or(u64::MAX),
                file_size: image.len(),
            })
        }
    }
    match end {
        Some(end) if end <= FOUR_GIB => {}
        _ => {
            return Err(Mb2Error::SegmentAbove4G {
                index,
                dest,
                end: end.unwrap_or(u64::MAX),
            })
        }
    }
    // Both fit in usize: they were just checked against the image's length.
    Ok(Segment {
        dest,
        file_offset: ph.p_offset as usize,
        file_size: ph.p_filesz as usize,
        mem_size: ph.p_memsz,
    })
}

/// Refuses segments sharing memory (a later copy would overwrite an earlier one).
fn check_overlaps(segments: &[Segment], headers: &[(usize, u64)]) -> Result<(), Mb2Error> {
    let number = |i: usize| headers.get(i).map_or(i, |&(n, _)| n);
    for (i, a) in segments.iter().enumerate() {
        for (j, b) in segments.iter().enumerate().skip(i + 1) {
            if a.dest < b.end() && b.dest < a.end() {
                return Err(Mb2Error::SegmentsOverlap {
                    first: number(i),
                    second: number(j),
                    first_range: (a.dest, a.end()),
                    second_range: (b.dest, b.end()),
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Gzip
// ---------------------------------------------------------------------------------------

pub const GZIP_ID1: u8 = 0x1f;
pub const GZIP_ID2: u8 = 0x8b;
pub const GZIP_METHOD_DEFLATE: u8 = 8;
/// The data is probably text (no effect on decoding).
pub const GZIP_FTEXT: u8 = 1 << 0;
/// A CRC16 of the header follows the optional fields.
pub const GZIP_FHCRC: u8 = 1 << 1;
/// A length-prefixed extra field follows the fixed header.
pub const GZIP_FEXTRA: u8 = 1 << 2;
/// A NUL-terminated original file name follows.
pub const GZIP_FNAME: u8 = 1 << 3;
/// A NUL-terminated comment follows.
pub const GZIP_FCOMMENT: u8 = 1 << 4;
const GZIP_FLAGS_KNOWN: u8 = GZIP_FTEXT | GZIP_FHCRC | GZIP_FEXTRA | GZIP_FNAME | GZIP_FCOMMENT;

/// CRC-32 (IEEE 802.3, reflected) polynomial, as gzip uses it.
const CRC32_POLYNOMIAL: u32 = 0xEDB8_8320;
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < table.len() {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < u8::BITS {
            crc = if crc & 1 != 0 {
                CRC32_POLYNOMIAL ^ (crc >> 1)
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The CRC-32 gzip stores in its trailer (and, truncated to 16 bits, in FHCRC).
pub fn crc32(data: &[u8]) -> u32 {
    !crc32_update(!0, data)
}

/// Feeds `data` into a running CRC-32 register (start with `!0`, finish with `!`).
fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        let index = ((crc ^ u32::from(byte)) & 0xff) as usize;
        crc = CRC32_TABLE.get(index).copied().unwrap_or(0) ^ (crc >> u8::BITS);
    }
    crc
}

/// Whether `bytes` start like gzip data.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.get(..2) == Some(&[GZIP_ID1, GZIP_ID2][..])
}

/// Most bytes parkboot inflates a gzip kernel to: far above any kernel (Xen is a few
/// MiB), and a bound on the time a hostile stream can take ("zip bomb").
pub const GZIP_MAX_INFLATED: u64 = 1 << 30;

/// The deflate window (RFC 1951: back-references reach at most 32 KiB). The counting
/// pass inflates into a wrapping buffer of this size and keeps nothing else.
const DEFLATE_WINDOW: usize = 32 * 1024;

/// Checks a whole gzip member in a first pass that keeps no output, and returns the
/// number of bytes it inflates to: the size of buffer [`inflate_gzip`] needs.
///
/// The size comes from the stream, not from the trailer: the deflate stream must end
/// with its last block, and the trailer after it must agree with what the stream
/// produced (CRC32 and ISIZE). A cut or corrupted file is refused here, before any
/// memory is sized from it. Stack use: the deflate state (about 11 KiB) and the 32 KiB
/// window.
pub fn gzip_inflated_size(compressed: &[u8]) -> Result<usize, Mb2Error> {
    let body_start = gzip_body_start(compressed)?;
    let body = compressed
        .get(body_start..)
        .ok_or(Mb2Error::GzipTruncated { what: "header" })?;
    let mut state = DecompressorOxide::new();
    let mut window = [0u8; DEFLATE_WINDOW];
    let mut in_pos = 0usize;
    let mut out_pos = 0usize;
    let mut total = 0u64;
    let mut crc = !0u32;
    loop {
        let input = body.get(in_pos..).unwrap_or(&[]);
        // The whole input is present (no HAS_MORE_INPUT); the window wraps.
        let (status, consumed, written) = decompress(&mut state, input, &mut window, out_pos, 0);
        in_pos = in_pos.saturating_add(consumed);
        let produced = window
            .get(out_pos..out_pos.saturating_add(written))
            .unwrap_or(&[]);
        crc = crc32_update(crc, produced);
        total = total.saturating_add(written as u64);
        out_pos = (out_pos + written) & (DEFLATE_WINDOW - 1);
        if total > GZIP_MAX_INFLATED {
            return Err(Mb2Error::GzipTooLarge {
                limit: GZIP_MAX_INFLATED,
            });
        }
        match status {
            TINFLStatus::Done => break,
            TINFLStatus::HasMoreOutput => {}
            TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
                return Err(Mb2Error::GzipStreamUnfinished {
                    len: compressed.len(),
                })
            }
            _ => {
                return Err(Mb2Error::GzipCorrupt {
                    at: body_start.saturating_add(in_pos),
                })
            }
        }
    }
    check_gzip_trailer(compressed, body_start.saturating_add(in_pos), !crc, total)?;
    // At most GZIP_MAX_INFLATED: fits in usize.
    Ok(total as usize)
}

/// Checks the trailer at `at` against what the stream inflated to.
fn check_gzip_trailer(
    compressed: &[u8],
    at: usize,
    computed: u32,
    inflated: u64,
) -> Result<(), Mb2Error> {
    let trailer =
        GzipTrailer::read_at(compressed, at).ok_or(Mb2Error::GzipTruncated { what: "trailer" })?;
    if computed != trailer.crc32 {
        return Err(Mb2Error::GzipCrcMismatch {
            stored: trailer.crc32,
            computed,
        });
    }
    // ISIZE is the size mod 2^32.
    if inflated as u32 != trailer.isize || inflated >= FOUR_GIB {
        return Err(Mb2Error::GzipSizeMismatch {
            stored: trailer.isize,
            actual: inflated,
        });
    }
    Ok(())
}

/// Parses a gzip member header; returns the offset of the deflate stream.
fn gzip_body_start(bytes: &[u8]) -> Result<usize, Mb2Error> {
    if !is_gzip(bytes) {
        return Err(Mb2Error::GzipBadMagic);
    }
    let header = GzipHeader::read_at(bytes, 0).ok_or(Mb2Error::GzipTruncated { what: "header" })?;
    if header.method != GZIP_METHOD_DEFLATE {
        return Err(Mb2Error::GzipMethod {
            method: header.method,
        });
    }
    if header.flags & !GZIP_FLAGS_KNOWN != 0 {
        return Err(Mb2Error::GzipReservedFlags {
            flags: header.flags,
        });
    }
    let mut pos = GZIP_HEADER_BYTES;
    if header.flags & GZIP_FEXTRA != 0 {
        let truncated = Mb2Error::GzipTruncated {
            what: "extra field",
        };
        let xlen = u16::read_at(bytes, pos).ok_or(truncated)?;
        pos = pos
            .checked_add(size_of::<u16>() + usize::from(xlen))
            .filter(|&p| p <= bytes.len())
            .ok_or(truncated)?;
    }
    for (flag, what) in [(GZIP_FNAME, "file name"), (GZIP_FCOMMENT, "comment")] {
        if header.flags & flag != 0 {
            let truncated = Mb2Error::GzipTruncated { what };
            let rest = bytes.get(pos..).ok_or(truncated)?;
            let nul = rest.iter().position(|&b| b == 0).ok_or(truncated)?;
            pos += nul + 1;
        }
    }
    if header.flags & GZIP_FHCRC != 0 {
        let stored =
            u16::read_at(bytes, pos).ok_or(Mb2Error::GzipTruncated { what: "header CRC" })?;
        let computed = crc32(bytes.get(..pos).unwrap_or(&[])) as u16;
        if stored != computed {
            return Err(Mb2Error::GzipHeaderCrc { stored, computed });
        }
        pos += size_of::<u16>();
    }
    Ok(pos)
}

/// Inflates one gzip member (RFC 1952) into `out`, without allocating, and checks its
/// CRC32 and size. Returns the number of bytes written. Use [`gzip_inflated_size`] to
/// size `out`.
///
/// The deflate state (about 11 KiB) lives on the stack; parkboot's boot stack is
/// large enough.
pub fn inflate_gzip(compressed: &[u8], out: &mut [u8]) -> Result<usize, Mb2Error> {
    let body_start = gzip_body_start(compressed)?;
    let body = compressed
        .get(body_start..)
        .ok_or(Mb2Error::GzipTruncated { what: "header" })?;
    let mut state = DecompressorOxide::new();
    // The whole input is here and the whole output buffer is the window, so one call
    // inflates everything (no HAS_MORE_INPUT, no wrapping).
    let (status, consumed, written) = decompress(
        &mut state,
        body,
        out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    let at = body_start.saturating_add(consumed);
    match status {
        TINFLStatus::Done => {}
        TINFLStatus::HasMoreOutput => {
            return Err(Mb2Error::GzipOutputTooSmall {
                available: out.len(),
            })
        }
        TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
            return Err(Mb2Error::GzipStreamUnfinished {
                len: compressed.len(),
            })
        }
        _ => return Err(Mb2Error::GzipCorrupt { at }),
    }
    let inflated = out.get(..written).unwrap_or(&[]);
    check_gzip_trailer(compressed, at, crc32(inflated), written as u64)?;
    Ok(written)
}

// ---------------------------------------------------------------------------------------
// Boot information
// ---------------------------------------------------------------------------------------

/// Top of conventional memory: the multiboot2 basic meminfo `mem_lower` never goes past
/// 640 KiB, where the legacy VGA window and the BIOS area begin.
pub const CONVENTIONAL_MEMORY_END: u64 = 640 * 1024;
/// Firmware data a PC keeps in the first page (the real-mode interrupt table, the BIOS
/// data area, coreboot's forwarding table at 0x500) does not end conventional memory.
const FIRST_PAGE_END: u64 = 0x1000;

/// What the basic meminfo tag (4) reports, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicMeminfo {
    /// Where usable conventional memory ends: the end of the usable range the kernel is
    /// shown that begins in the first page, at most 640 KiB. Ranges parkboot reserved
    /// (the AP start trampoline at the top of low memory) end it, as in the memory map
    /// tag: Xen puts its real-mode trampoline right below `mem_lower`, reading nothing
    /// else, so this must never claim memory the map calls reserved. Non-usable memory
    /// inside the first page does not count: coreboot marks `[0, 0x1000)` as its tables
    /// (the forwarding table at 0x500), where a BIOS keeps its interrupt table and data
    /// area yet reports the page as RAM; with the strict "starting at address 0" reading
    /// `mem_lower` is 0 under coreboot and Xen falls back to the BIOS data area, which
    /// coreboot fills with 1024 KiB, and puts its trampoline over 0xF0000.
    pub lower_kib: u32,
    /// Usable RAM from 1 MiB up to the first hole or non-usable platform range, as the
    /// platform reports it (parkboot's own memory there is in the memory map tag; this
    /// is only the legacy size).
    pub upper_kib: u32,
}

/// The basic meminfo for a kernel booted with `memory` as it stands (see
/// [`BasicMeminfo`]).
pub fn basic_meminfo(memory: &MemoryMap) -> BasicMeminfo {
    let mut lower = 0;
    for (start, size, report) in memory.kernel_view() {
        // Only the range that begins by the end of the first page is conventional
        // memory; a later one means the low area is broken up and its size unknown.
        if start > FIRST_PAGE_END {
            break;
        }
        if report == ReportAs::Usable {
            lower = start.saturating_add(size).min(CONVENTIONAL_MEMORY_END);
            break;
        }
    }
    let mut upper_end = ONE_MIB;
    for region in memory
        .platform_regions()
        .iter()
        .filter(|r| r.kind.is_usable())
    {
        if region.start <= upper_end && region.end() > upper_end {
            upper_end = region.end();
        }
    }
    BasicMeminfo {
        lower_kib: (lower / 1024) as u32,
        upper_kib: ((upper_end - ONE_MIB).min(u64::from(u32::MAX) * 1024) / 1024) as u32,
    }
}

/// Lays out multiboot2 boot information in a caller's buffer: the 8-byte header, tags
/// at 8-byte boundaries, and the end tag written by [`InfoBuilder::finish`]. The kernel
/// needs the buffer at an 8-aligned physical address; the buffer itself may have any
/// alignment while it is built (fields are written byte-wise).
///
/// Tag methods chain and do not fail on their own: the first problem (buffer full,
/// wrong RSDP size) is kept, later tags are skipped, and [`InfoBuilder::finish`]
/// returns it. That keeps the call site a straight list of tags.
pub struct InfoBuilder<'a> {
    buf: &'a mut [u8],
    /// Where the next tag goes.
    pos: usize,
    error: Option<Mb2Error>,
}

impl<'a> InfoBuilder<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        InfoBuilder {
            buf,
            pos: BootInfoHeader::SIZE,
            error: None,
        }
    }

    /// The first problem so far.
    pub fn error(&self) -> Option<Mb2Error> {
        self.error
    }

    /// Bytes used so far (without the end tag).
    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == BootInfoHeader::SIZE
    }

    fn fail(&mut self, error: Mb2Error) {
        self.error.get_or_insert(error);
    }

    /// Claims room for a `size`-byte tag (padded to 8, zeroed), writes its header and
    /// returns where it starts; `None` (with the error kept) when it does not fit.
    fn begin(&mut self, tag_type: u32, size: usize) -> Option<usize> {
        if self.error.is_some() {
            return None;
        }
        let Ok(size32) = u32::try_from(size) else {
            self.fail(Mb2Error::InfoTooLarge { tag_type });
            return None;
        };
        let end = align_up(size, TAG_ALIGN).and_then(|s| self.pos.checked_add(s));
        let start = self.pos;
        let Some(room) = end.and_then(|end| self.buf.get_mut(start..end)) else {
            self.fail(Mb2Error::InfoBufferTooSmall {
                tag_type,
                needed: end.unwrap_or(usize::MAX),
                available: self.buf.len(),
            });
            return None;
        };
        room.fill(0);
        let header = InfoTagHeader {
            tag_type,
            size: size32,
        };
        header.write_at(self.buf, start)?;
        self.pos = end?;
        Some(start)
    }

    /// A tag of the 8-byte header followed by `payload`.
    fn bytes_tag(&mut self, tag_type: u32, payload: &[u8]) -> &mut Self {
        let Some(size) = InfoTagHeader::SIZE.checked_add(payload.len()) else {
            self.fail(Mb2Error::InfoTooLarge { tag_type });
            return self;
        };
        if let Some(start) = self.begin(tag_type, size) {
            let at = start + InfoTagHeader::SIZE;
            if let Some(dst) = self.buf.get_mut(at..at + payload.len()) {
                dst.copy_from_slice(payload);
            }
        }
        self
    }

    /// A tag of the 8-byte header followed by `text` and a NUL (the padding zeroed by
    /// `begin` supplies the NUL).
    fn string_tag(&mut self, tag_type: u32, fixed: usize, text: &str) -> Option<usize> {
        let size = fixed.checked_add(text.len())?.checked_add(1)?;
        let start = self.begin(tag_type, size)?;
        let at = start + fixed;
        self.buf
            .get_mut(at..at + text.len())?
            .copy_from_slice(text.as_bytes());
        Some(start)
    }

    /// Tag 1: the kernel's command line.
    pub fn cmdline(&mut self, cmdline: &str) -> &mut Self {
        self.string_tag(TAG_CMDLINE, InfoTagHeader::SIZE, cmdline);
        self
    }

    /// Tag 2: the loader's name.
    pub fn loader_name(&mut self, name: &str) -> &mut Self {
        self.string_tag(TAG_BOOT_LOADER_NAME, InfoTagHeader::SIZE, name);
        self
    }

    /// Tag 3: one module at physical `start..end` with its command line.
    pub fn module(&mut self, start: u32, end: u32, cmdline: &str) -> &mut Self {
        if let Some(at) = self.string_tag(TAG_MODULE, ModuleTag::SIZE, cmdline) {
            let size = InfoTagHeader::read_at(self.buf, at).map_or(0, |h| h.size);
            let tag = ModuleTag {
                tag_type: TAG_MODULE,
                size,
                mod_start: start,
                mod_end: end,
            };
            tag.write_at(self.buf, at);
        }
        self
    }

    /// Tag 4: KiB of RAM below 640 KiB and from 1 MiB up to the first hole.
    pub fn basic_meminfo(&mut self, mem_lower_kib: u32, mem_upper_kib: u32) -> &mut Self {
        if let Some(at) = self.begin(TAG_BASIC_MEMINFO, BasicMeminfoTag::SIZE) {
            let tag = BasicMeminfoTag {
                tag_type: TAG_BASIC_MEMINFO,
                size: BasicMeminfoTag::SIZE as u32,
                mem_lower: mem_lower_kib,
                mem_upper: mem_upper_kib,
            };
            tag.write_at(self.buf, at);
        }
        self
    }

    /// Tag 6: the memory map, as `(base, length, type)` with the `MEMORY_*` types.
    pub fn memory_map(&mut self, entries: impl IntoIterator<Item = (u64, u64, u32)>) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        // The entries go into the buffer first; the tag header is written in front of
        // them once their number is known.
        let start = self.pos;
        let mut entries = entries.into_iter();
        let mut count = 0usize;
        let mut full = false;
        for (base_addr, length, entry_type) in entries.by_ref() {
            let entry = MemoryMapEntry {
                base_addr,
                length,
                entry_type,
                reserved: 0,
            };
            let at = count
                .saturating_mul(MemoryMapEntry::SIZE)
                .saturating_add(start)
                .saturating_add(MemoryMapTag::SIZE);
            count += 1;
            if entry.write_at(self.buf, at).is_none() {
                full = true;
                break;
            }
        }
        // On a full buffer the rest are only counted, to say how much room is needed.
        let count = count.saturating_add(entries.count());
        let size = count
            .saturating_mul(MemoryMapEntry::SIZE)
            .saturating_add(MemoryMapTag::SIZE);
        let end = align_up(size, TAG_ALIGN).and_then(|s| start.checked_add(s));
        let padding = end.and_then(|end| self.buf.get_mut(start.saturating_add(size)..end));
        let (false, Some(padding), Some(end)) = (full, padding, end) else {
            self.fail(Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_MMAP,
                needed: end.unwrap_or(usize::MAX),
                available: self.buf.len(),
            });
            return self;
        };
        padding.fill(0);
        let Ok(size) = u32::try_from(size) else {
            self.fail(Mb2Error::InfoTooLarge { tag_type: TAG_MMAP });
            return self;
        };
        let tag = MemoryMapTag {
            tag_type: TAG_MMAP,
            size,
            entry_size: MemoryMapEntry::SIZE as u32,
            entry_version: MMAP_ENTRY_VERSION,
        };
        if tag.write_at(self.buf, start).is_some() {
            self.pos = end;
        }
        self
    }

    /// Tag 14: a copy of the ACPI 1.0 RSDP.
    pub fn acpi_old_rsdp(&mut self, rsdp: &[u8; RSDP_V1_SIZE]) -> &mut Self {
        self.bytes_tag(TAG_ACPI_OLD, rsdp)
    }

    /// Tag 15: a copy of the ACPI 2.0+ RSDP (36 bytes).
    pub fn acpi_new_rsdp(&mut self, rsdp: &[u8]) -> &mut Self {
        if rsdp.len() != RSDP_V2_SIZE {
            self.fail(Mb2Error::InfoRsdpLength {
                tag_type: TAG_ACPI_NEW,
                len: rsdp.len(),
                expected: RSDP_V2_SIZE,
            });
            return self;
        }
        self.bytes_tag(TAG_ACPI_NEW, rsdp)
    }

    /// Any tag: the 8-byte `tag_type`/`size` header is written here, `payload` is the
    /// rest of the tag (for a `#[repr(C)]` tag struct that starts with its own type and
    /// size, the bytes after those 8).
    pub fn raw_tag(&mut self, tag_type: u32, payload: &[u8]) -> &mut Self {
        self.bytes_tag(tag_type, payload)
    }

    /// parkboot's own tag ([`MULTIBOOT2_TAG_TYPE_PARKBOOT`]), written field by field
    /// (no byte view of the struct needed); its `tag_type` and `size` are set here
    /// whatever `tag` holds.
    pub fn parkboot_tag(&mut self, tag: &Multiboot2ParkbootTag) -> &mut Self {
        type T = Multiboot2ParkbootTag;
        let mut bytes = [0u8; size_of::<T>()];
        let _ = MULTIBOOT2_TAG_TYPE_PARKBOOT
            .write_at(&mut bytes, offset_of!(T, tag_type))
            .and_then(|_| (size_of::<T>() as u32).write_at(&mut bytes, offset_of!(T, size)))
            .and_then(|_| {
                tag.park_table
                    .write_at(&mut bytes, offset_of!(T, park_table))
            })
            .and_then(|_| {
                tag.park_table_version
                    .write_at(&mut bytes, offset_of!(T, park_table_version))
            })
            .and_then(|_| tag.iteration.write_at(&mut bytes, offset_of!(T, iteration)))
            .and_then(|_| {
                tag.iterations
                    .write_at(&mut bytes, offset_of!(T, iterations))
            })
            .and_then(|_| tag.reserved.write_at(&mut bytes, offset_of!(T, reserved)));
        let payload = bytes.get(InfoTagHeader::SIZE..).unwrap_or_default();
        self.bytes_tag(MULTIBOOT2_TAG_TYPE_PARKBOOT, payload)
    }

    /// Writes the end tag and the header; returns the boot information's total size.
    pub fn finish(mut self) -> Result<usize, Mb2Error> {
        let end_at = self.begin(TAG_END, InfoTagHeader::SIZE);
        if let Some(error) = self.error {
            return Err(error);
        }
        let total = self.pos;
        let too_large = Mb2Error::InfoTooLarge { tag_type: TAG_END };
        let header = BootInfoHeader {
            total_size: u32::try_from(total).map_err(|_| too_large)?,
            reserved: 0,
        };
        end_at.ok_or(too_large)?;
        header
            .write_at(self.buf, 0)
            .ok_or(Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_END,
                needed: total,
                available: self.buf.len(),
            })?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- image builders -----------------------------------------------------------------

    /// A header tag: header, payload, padded to 8.
    fn header_tag(tag_type: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
        let size = (HeaderTagHeader::SIZE + payload.len()) as u32;
        let mut t = vec![0u8; HeaderTagHeader::SIZE];
        HeaderTagHeader {
            tag_type,
            flags,
            size,
        }
        .write_at(&mut t, 0)
        .unwrap();
        t.extend_from_slice(payload);
        t.resize(align_up(t.len(), TAG_ALIGN).unwrap(), 0);
        t
    }

    fn words(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn info_request(flags: u16, types: &[u32]) -> Vec<u8> {
        header_tag(HEADER_TAG_INFORMATION_REQUEST, flags, &words(types))
    }

    fn address_tag(header_addr: u32, load_addr: u32, load_end: u32, bss_end: u32) -> Vec<u8> {
        header_tag(
            HEADER_TAG_ADDRESS,
            0,
            &words(&[header_addr, load_addr, load_end, bss_end]),
        )
    }

    fn entry_tag(entry: u32) -> Vec<u8> {
        header_tag(HEADER_TAG_ENTRY_ADDRESS, 0, &words(&[entry]))
    }

    fn relocatable_tag(min: u32, max: u32, align: u32, preference: u32) -> Vec<u8> {
        header_tag(
            HEADER_TAG_RELOCATABLE,
            0,
            &words(&[min, max, align, preference]),
        )
    }

    /// A multiboot2 header for `architecture` with `tags` and an end tag, checksummed.
    fn mb2_header_arch(architecture: u32, tags: &[Vec<u8>]) -> Vec<u8> {
        let mut body: Vec<u8> = tags.concat();
        body.extend(header_tag(HEADER_TAG_END, 0, &[]));
        let header_length = (HeaderFixed::SIZE + body.len()) as u32;
        let checksum = 0u32
            .wrapping_sub(HEADER_MAGIC)
            .wrapping_sub(architecture)
            .wrapping_sub(header_length);
        let mut h = vec![0u8; HeaderFixed::SIZE];
        HeaderFixed {
            magic: HEADER_MAGIC,
            architecture,
            header_length,
            checksum,
        }
        .write_at(&mut h, 0)
        .unwrap();
        h.extend(body);
        h
    }

    fn mb2_header(tags: &[Vec<u8>]) -> Vec<u8> {
        mb2_header_arch(ARCHITECTURE_I386, tags)
    }

    fn put(image: &mut Vec<u8>, at: usize, bytes: &[u8]) {
        if image.len() < at + bytes.len() {
            image.resize(at + bytes.len(), 0);
        }
        image[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A program header for the test ELF builders.
    #[derive(Clone, Copy)]
    struct Ph {
        p_type: u32,
        offset: u64,
        vaddr: u64,
        paddr: u64,
        filesz: u64,
        memsz: u64,
    }

    fn load(offset: u64, paddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            p_type: elf::abi::PT_LOAD,
            offset,
            vaddr: paddr,
            paddr,
            filesz,
            memsz,
        }
    }

    // ELF header field offsets (System V ABI), for building test files by hand.
    const EI_CLASS_32: u8 = 1;
    const EI_CLASS_64: u8 = 2;
    const EI_DATA_LE: u8 = 1;
    const EV_CURRENT: u8 = 1;
    const ELF32_EHDR_SIZE: usize = 52;
    const ELF64_EHDR_SIZE: usize = 64;
    const ELF32_PHDR_SIZE: usize = 32;
    const ELF64_PHDR_SIZE: usize = 56;
    /// Where the test ELF files keep their multiboot2 header (inside segment 0).
    const MB2_AT: usize = 0x1000;

    /// An ELF file (32- or 64-bit, x86) with `phdrs`, entry `entry`, the multiboot2
    /// `header` at [`MB2_AT`], and file contents up to the end of every segment.
    fn elf(is64: bool, phdrs: &[Ph], entry: u64, header: &[u8]) -> Vec<u8> {
        let (ehsize, phsize) = if is64 {
            (ELF64_EHDR_SIZE, ELF64_PHDR_SIZE)
        } else {
            (ELF32_EHDR_SIZE, ELF32_PHDR_SIZE)
        };
        let mut f = vec![0u8; ehsize];
        f[..4].copy_from_slice(&elf::abi::ELFMAGIC);
        f[elf::abi::EI_CLASS] = if is64 { EI_CLASS_64 } else { EI_CLASS_32 };
        f[elf::abi::EI_DATA] = EI_DATA_LE;
        f[elf::abi::EI_VERSION] = EV_CURRENT;
        let machine = if is64 {
            elf::abi::EM_X86_64
        } else {
            elf::abi::EM_386
        };
        put(&mut f, 16, &elf::abi::ET_EXEC.to_le_bytes());
        put(&mut f, 18, &machine.to_le_bytes());
        put(&mut f, 20, &1u32.to_le_bytes());
        if is64 {
            put(&mut f, 24, &entry.to_le_bytes());
            put(&mut f, 32, &(ehsize as u64).to_le_bytes()); // e_phoff
            put(&mut f, 52, &(ehsize as u16).to_le_bytes());
            put(&mut f, 54, &(phsize as u16).to_le_bytes());
            put(&mut f, 56, &(phdrs.len() as u16).to_le_bytes());
        } else {
            put(&mut f, 24, &(entry as u32).to_le_bytes());
            put(&mut f, 28, &(ehsize as u32).to_le_bytes()); // e_phoff
            put(&mut f, 40, &(ehsize as u16).to_le_bytes());
            put(&mut f, 42, &(phsize as u16).to_le_bytes());
            put(&mut f, 44, &(phdrs.len() as u16).to_le_bytes());
        }
        for (i, p) in phdrs.iter().enumerate() {
            let at = ehsize + i * phsize;
            let mut ph = Vec::new();
            if is64 {
                ph.extend(p.p_type.to_le_bytes());
                ph.extend(0u32.to_le_bytes()); // p_flags
                for v in [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, 0x1000] {
                    ph.extend(v.to_le_bytes());
                }
            } else {
                ph.extend(p.p_type.to_le_bytes());
                for v in [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz] {
                    ph.extend((v as u32).to_le_bytes());
                }
                ph.extend(0u32.to_le_bytes()); // p_flags
                ph.extend(0x1000u32.to_le_bytes()); // p_align
            }
            put(&mut f, at, &ph);
        }
        let end = phdrs
            .iter()
            .filter(|p| p.offset < 0x1_0000_0000)
            .map(|p| (p.offset + p.filesz) as usize)
            .max()
            .unwrap_or(0);
        if f.len() < end {
            f.resize(end, 0);
        }
        // Recognisable contents, so a plan's file ranges can be checked by value.
        for (i, b) in f.iter_mut().enumerate().skip(ehsize + phdrs.len() * phsize) {
            *b = (i % 251) as u8;
        }
        put(&mut f, MB2_AT, header);
        f
    }

    /// The usual two-segment kernel: 0x100000 (file 0x1000..0x3000, bss to 0x103000) and
    /// 0x200000 (file 0x3000..0x3800, bss to 0x201000), with a note in between.
    fn two_segments() -> Vec<Ph> {
        vec![
            load(0x1000, 0x10_0000, 0x2000, 0x3000),
            Ph {
                p_type: elf::abi::PT_NOTE,
                offset: 0x1100,
                vaddr: 0,
                paddr: 0,
                filesz: 0x10,
                memsz: 0,
            },
            load(0x3000, 0x20_0000, 0x800, 0x1000),
        ]
    }

    fn expected_two_segments() -> heapless::Vec<Segment, MAX_SEGMENTS> {
        let mut v = heapless::Vec::new();
        v.push(Segment {
            dest: 0x10_0000,
            file_offset: 0x1000,
            file_size: 0x2000,
            mem_size: 0x3000,
        })
        .unwrap();
        v.push(Segment {
            dest: 0x20_0000,
            file_offset: 0x3000,
            file_size: 0x800,
            mem_size: 0x1000,
        })
        .unwrap();
        v
    }

    fn standard_header() -> Vec<u8> {
        mb2_header(&[
            info_request(0, &[TAG_CMDLINE, TAG_MMAP, TAG_ACPI_NEW]),
            header_tag(HEADER_TAG_MODULE_ALIGN, 0, &[]),
            header_tag(HEADER_TAG_CONSOLE_FLAGS, 0, &words(&[3])),
        ])
    }

    fn requested(types: &[u32]) -> RequestedTags {
        let mut r = RequestedTags::default();
        for &t in types {
            r.insert(t);
        }
        r
    }

    // ---- plans ---------------------------------------------------------------------------

    #[test]
    fn multiboot2_elf32_plan_is_exact() {
        let image = elf(false, &two_segments(), 0x10_0020, &standard_header());
        let plan = plan(&image).unwrap();
        assert_eq!(
            plan,
            LoadPlan {
                kind: ImageKind::Elf32,
                header_offset: MB2_AT,
                entry: 0x10_0020,
                segments: expected_two_segments(),
                relocatable: None,
                module_alignment: true,
                requested: requested(&[TAG_CMDLINE, TAG_MMAP, TAG_ACPI_NEW]),
                console_flags: Some(3),
            }
        );
        assert_eq!(plan.image_range(), 0x10_0000..0x20_1000);
        assert_eq!(plan.segments[0].file_range(), 0x1000..0x3000);
        assert_eq!(plan.segments[0].zero_range(), 0x10_2000..0x10_3000);
        assert_eq!(plan.requested.iter().collect::<Vec<_>>(), vec![1, 6, 15]);
        assert_eq!(find_header(&image), Some(MB2_AT));
    }

    #[test]
    fn multiboot2_elf64_plan_translates_a_high_virtual_entry() {
        // Linked at -2 GiB, loaded at 1 MiB: e_entry is virtual.
        let high = 0xffff_ffff_8000_0000u64;
        let mut phdrs = two_segments();
        for p in phdrs.iter_mut().filter(|p| p.p_type == elf::abi::PT_LOAD) {
            p.vaddr = high + p.paddr;
        }
        let image = elf(true, &phdrs, high + 0x20_0040, &mb2_header(&[]));
        let plan = plan(&image).unwrap();
        assert_eq!(plan.kind, ImageKind::Elf64);
        assert_eq!(plan.entry, 0x20_0040);
        assert_eq!(plan.segments, expected_two_segments());
        assert!(plan.requested.is_empty());
        assert!(!plan.module_alignment);
    }

    #[test]
    fn multiboot2_entry_tag_overrides_the_elf_entry() {
        let header = mb2_header(&[entry_tag(0x20_0010)]);
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        assert_eq!(plan(&image).unwrap().entry, 0x20_0010);

        let header = mb2_header(&[entry_tag(0x30_0000)]);
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        assert_eq!(
            plan(&image),
            Err(Mb2Error::EntryOutsideSegments { entry: 0x30_0000 })
        );
    }

    /// A raw (non-ELF) kernel: 0x40 bytes of code, then the header at 0x40.
    fn aout_image(tags: &[Vec<u8>], len: usize) -> Vec<u8> {
        let mut image: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        put(&mut image, 0x40, &mb2_header(tags));
        image.resize(len.max(image.len()), 0);
        image
    }

    #[test]
    fn multiboot2_address_tag_plan() {
        let image = aout_image(
            &[
                address_tag(0x10_0040, 0x10_0000, 0x10_1000, 0x10_2000),
                entry_tag(0x10_0080),
            ],
            0x1800,
        );
        let plan = plan(&image).unwrap();
        assert_eq!(plan.kind, ImageKind::AoutKludge);
        assert_eq!(plan.entry, 0x10_0080);
        assert_eq!(plan.header_offset, 0x40);
        assert_eq!(
            plan.segments.as_slice(),
            &[Segment {
                dest: 0x10_0000,
                file_offset: 0,
                file_size: 0x1000,
                mem_size: 0x2000
            }]
        );

        // load_end_addr 0: the whole rest of the file; bss_end_addr 0: no bss. The load
        // starts 0x20 bytes before the header.
        let image = aout_image(
            &[
                address_tag(0x10_0020, 0x10_0000, 0, 0),
                entry_tag(0x10_0000),
            ],
            0x1800,
        );
        let plan = super::plan(&image).unwrap();
        assert_eq!(
            plan.segments.as_slice(),
            &[Segment {
                dest: 0x10_0000,
                file_offset: 0x20,
                file_size: 0x17e0,
                mem_size: 0x17e0
            }]
        );

        // load_addr -1: from the first byte of the file.
        let image = aout_image(
            &[
                address_tag(0x10_0040, LOAD_ADDR_FILE_START, 0, 0),
                entry_tag(0x10_0000),
            ],
            0x800,
        );
        let plan = super::plan(&image).unwrap();
        assert_eq!(
            plan.segments.as_slice(),
            &[Segment {
                dest: 0x10_0000,
                file_offset: 0,
                file_size: 0x800,
                mem_size: 0x800
            }]
        );
    }

    #[test]
    fn multiboot2_address_tag_errors() {
        let image = aout_image(&[address_tag(0x10_0040, 0x10_0000, 0, 0)], 0x800);
        assert_eq!(plan(&image), Err(Mb2Error::MissingEntryTag));

        let image = aout_image(
            &[
                address_tag(0x10_0040, 0x10_0080, 0, 0),
                entry_tag(0x10_0080),
            ],
            0x800,
        );
        assert_eq!(
            plan(&image),
            Err(Mb2Error::LoadAddrAboveHeader {
                load_addr: 0x10_0080,
                header_addr: 0x10_0040
            })
        );

        // The header is at 0x40 but claims 0x100 bytes before it.
        let image = aout_image(
            &[
                address_tag(0x10_0100, 0x10_0000, 0, 0),
                entry_tag(0x10_0000),
            ],
            0x800,
        );
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::LoadStartsBeforeFile { .. })
        ));

        let image = aout_image(
            &[
                address_tag(0x10_0040, 0x10_0000, 0x10_1000, 0),
                entry_tag(0x10_0000),
            ],
            0x800,
        );
        let err = plan(&image).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::LoadPastFile {
                file_offset: 0,
                file_end: 0x1000,
                file_size: 0x800
            }
        );
        assert_eq!(
            err.to_string(),
            "multiboot2 address tag: file bytes 0x0-0x1000 run past the end of the file (file size 0x800)"
        );

        let image = aout_image(
            &[
                address_tag(0x10_0040, 0x10_0000, 0x10_0400, 0x10_0200),
                entry_tag(0x10_0000),
            ],
            0x800,
        );
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::BssEndBeforeLoadEnd { .. })
        ));

        let image = aout_image(
            &[
                address_tag(0xffff_f040, 0xffff_f000, 0, 0),
                entry_tag(0xffff_f000),
            ],
            0x1800,
        );
        assert!(matches!(plan(&image), Err(Mb2Error::LoadAbove4G { .. })));

        let image = aout_image(
            &[
                address_tag(0x10_0040, 0x10_0000, 0x10_0400, 0),
                entry_tag(0x10_0400),
            ],
            0x800,
        );
        assert_eq!(
            plan(&image),
            Err(Mb2Error::EntryOutsideSegments { entry: 0x10_0400 })
        );
    }

    #[test]
    fn multiboot2_no_header() {
        let image = vec![0u8; 0x10000];
        assert_eq!(plan(&image), Err(Mb2Error::NoHeader));
        assert_eq!(find_header(&image), None);
        assert_eq!(
            Mb2Error::NoHeader.to_string(),
            "no multiboot2 header in the first 32 KiB"
        );
        assert_eq!(plan(&[]), Err(Mb2Error::NoHeader));
    }

    #[test]
    fn multiboot2_header_beyond_32_kib() {
        let header = mb2_header(&[]);
        let mut image = vec![0u8; 0x9000];
        put(&mut image, HEADER_SEARCH_LIMIT, &header);
        assert_eq!(plan(&image), Err(Mb2Error::NoHeader));

        // The fixed part fits, the end tag does not.
        let mut image = vec![0u8; 0x9000];
        let at = HEADER_SEARCH_LIMIT - HeaderFixed::SIZE;
        put(&mut image, at, &header);
        assert_eq!(
            plan(&image),
            Err(Mb2Error::BadHeaderLength {
                offset: at,
                header_length: header.len() as u32,
                limit: HEADER_SEARCH_LIMIT
            })
        );
    }

    #[test]
    fn multiboot2_misaligned_header_is_not_found() {
        let mut image = vec![0u8; 0x1000];
        put(&mut image, 4, &mb2_header(&[]));
        assert_eq!(plan(&image), Err(Mb2Error::NoHeader));
    }

    #[test]
    fn multiboot2_bad_checksum() {
        let mut header = mb2_header(&[]);
        header[offset_of!(HeaderFixed, checksum)] ^= 1;
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        let err = plan(&image).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::BadChecksum {
                offset: MB2_AT,
                sum: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "multiboot2 header at offset 0x1000: checksum does not sum to zero (0x00000001)"
        );
        assert_eq!(find_header(&image), None);
    }

    #[test]
    fn multiboot2_architecture_mips_refused() {
        let header = mb2_header_arch(ARCHITECTURE_MIPS32, &[]);
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        let err = plan(&image).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::UnsupportedArchitecture {
                offset: MB2_AT,
                architecture: ARCHITECTURE_MIPS32
            }
        );
        assert!(err.to_string().contains("architecture 4 (MIPS)"), "{err}");
        // Still recognised as a multiboot2 kernel, so the error reaches the user.
        assert_eq!(find_header(&image), Some(MB2_AT));
    }

    #[test]
    fn multiboot2_information_request() {
        let header = mb2_header(&[info_request(0, &[TAG_CMDLINE, TAG_FRAMEBUFFER])]);
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        let err = plan(&image).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::UnavailableInfo {
                tag_type: TAG_FRAMEBUFFER
            }
        );
        assert_eq!(
            err.to_string(),
            "the kernel requires boot information tag 8 (framebuffer), which parkboot does not provide"
        );

        let header = mb2_header(&[info_request(
            HEADER_TAG_OPTIONAL,
            &[TAG_CMDLINE, TAG_FRAMEBUFFER, 99],
        )]);
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        let plan = plan(&image).unwrap();
        assert!(plan.requested.contains(TAG_FRAMEBUFFER));
        assert!(plan.requested.contains(TAG_CMDLINE));
        assert!(!plan.requested.contains(TAG_MMAP));
        assert!(!plan.requested.contains(99));

        for t in PROVIDED_TAGS {
            let header = mb2_header(&[info_request(0, &[t])]);
            assert!(
                super::plan(&elf(false, &two_segments(), 0x10_0020, &header)).is_ok(),
                "{t}"
            );
        }
        for t in [
            TAG_BOOTDEV,
            TAG_VBE,
            TAG_ELF_SECTIONS,
            TAG_APM,
            TAG_EFI64,
            TAG_SMBIOS,
            TAG_NETWORK,
            TAG_EFI_MMAP,
        ] {
            let header = mb2_header(&[info_request(0, &[t])]);
            assert_eq!(
                super::plan(&elf(false, &two_segments(), 0x10_0020, &header)),
                Err(Mb2Error::UnavailableInfo { tag_type: t })
            );
        }
    }

    #[test]
    fn multiboot2_required_header_tags() {
        let fb = |flags| header_tag(HEADER_TAG_FRAMEBUFFER, flags, &words(&[1024, 768, 32]));
        let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[fb(0)]));
        let err = plan(&image).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::RequiredTag {
                offset: MB2_AT + HeaderFixed::SIZE,
                tag_type: HEADER_TAG_FRAMEBUFFER
            }
        );
        assert!(
            err.to_string().contains("parkboot has no framebuffer"),
            "{err}"
        );
        let image = elf(
            false,
            &two_segments(),
            0x10_0020,
            &mb2_header(&[fb(HEADER_TAG_OPTIONAL)]),
        );
        assert!(plan(&image).is_ok());

        let efi_bs = |flags| header_tag(HEADER_TAG_EFI_BS, flags, &[]);
        let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[efi_bs(0)]));
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::RequiredTag {
                tag_type: HEADER_TAG_EFI_BS,
                ..
            })
        ));
        let image = elf(
            false,
            &two_segments(),
            0x10_0020,
            &mb2_header(&[efi_bs(HEADER_TAG_OPTIONAL)]),
        );
        assert!(plan(&image).is_ok());

        let unknown = |flags| header_tag(42, flags, &[1, 2, 3]);
        let image = elf(
            false,
            &two_segments(),
            0x10_0020,
            &mb2_header(&[unknown(0)]),
        );
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::RequiredTag { tag_type: 42, .. })
        ));
        let image = elf(
            false,
            &two_segments(),
            0x10_0020,
            &mb2_header(&[unknown(HEADER_TAG_OPTIONAL)]),
        );
        assert!(plan(&image).is_ok());

        // EFI entry points are ignored: parkboot is not an EFI loader.
        let tags = [
            header_tag(HEADER_TAG_ENTRY_ADDRESS_EFI32, 0, &words(&[0xdead])),
            header_tag(HEADER_TAG_ENTRY_ADDRESS_EFI64, 0, &words(&[0xbeef])),
        ];
        let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&tags));
        assert_eq!(plan(&image).unwrap().entry, 0x10_0020);
    }

    #[test]
    fn multiboot2_damaged_header_tags() {
        // An address tag cut to 16 bytes.
        let mut short = header_tag(HEADER_TAG_ADDRESS, 0, &words(&[0x10_0040, 0x10_0000]));
        short.truncate(16);
        let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[short]));
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::TagTooSmall {
                tag_type: HEADER_TAG_ADDRESS,
                size: 16,
                min: 24,
                ..
            })
        ));

        // A tag whose size runs past header_length.
        let mut big = header_tag(HEADER_TAG_CONSOLE_FLAGS, 0, &words(&[0]));
        big[offset_of!(HeaderTagHeader, size)] = 0x80;
        let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[big]));
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::TagPastHeader { size: 0x80, .. })
        ));

        // A header without an end tag.
        let mut header = mb2_header(&[]);
        header.truncate(HeaderFixed::SIZE);
        let length = HeaderFixed::SIZE as u32;
        let checksum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(length);
        HeaderFixed {
            magic: HEADER_MAGIC,
            architecture: 0,
            header_length: length,
            checksum,
        }
        .write_at(&mut header, 0)
        .unwrap();
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        assert_eq!(
            plan(&image),
            Err(Mb2Error::MissingEndTag { offset: MB2_AT })
        );

        // A tag of size 0 would loop forever if accepted.
        let image = elf(
            false,
            &two_segments(),
            0x10_0020,
            &mb2_header(&[vec![7, 0, 0, 0, 0, 0, 0, 0]]),
        );
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::TagTooSmall { size: 0, .. })
        ));
    }

    #[test]
    fn multiboot2_truncated_elf() {
        let image = elf(false, &two_segments(), 0x10_0020, &standard_header());

        // The file ends inside the program header table.
        let mut cut = image.clone();
        put(&mut cut, 28, &0x3ff0u32.to_le_bytes()); // e_phoff near the end
        let err = plan(&cut).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::ElfProgramHeadersPastFile {
                start: 0x3ff0,
                end: 0x3ff0 + 3 * 32,
                file_size: 0x3800
            }
        );
        assert!(err
            .to_string()
            .starts_with("ELF program header table (0x3ff0-0x4050) runs past"));

        // The file ends inside segment 2.
        let cut = &image[..0x3400];
        let err = plan(cut).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::SegmentPastFile {
                index: 2,
                dest: 0x20_0000,
                end: 0x20_1000,
                file_offset: 0x3000,
                file_end: 0x3800,
                file_size: 0x3400
            }
        );
        assert_eq!(
            err.to_string(),
            "ELF segment 2 (0x200000-0x201000) runs past the end of the file: file bytes \
             0x3000-0x3800 (file size 0x3400)"
        );

        // Cut anywhere: never a panic, always an error or (past every segment) a plan.
        for len in (0..image.len()).step_by(7) {
            let _ = plan(&image[..len]);
        }
    }

    #[test]
    fn multiboot2_segment_checks() {
        let header = standard_header();
        let segs = |p: Vec<Ph>| elf(false, &p, 0x10_0020, &header);

        let image = segs(vec![load(0x1000, 0xffff_f000, 0x1000, 0x2000)]);
        let err = plan(&image).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::SegmentAbove4G {
                index: 0,
                dest: 0xffff_f000,
                end: 0x1_0000_1000
            }
        );
        assert!(err.to_string().contains("reaches past 4 GiB"));

        let mut above = two_segments();
        above[2].paddr = 0x1_0000_0000;
        let image = elf(true, &above, 0x10_0020, &header);
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::SegmentAbove4G { index: 2, .. })
        ));

        let mut overflow = two_segments();
        overflow[2].paddr = u64::MAX - 0x10;
        let image = elf(true, &overflow, 0x10_0020, &header);
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::SegmentAbove4G {
                index: 2,
                end: u64::MAX,
                ..
            })
        ));

        let image = segs(vec![load(0x1000, 0x10_0000, 0x2000, 0x1000)]);
        assert!(matches!(
            plan(&image),
            Err(Mb2Error::SegmentFileLargerThanMemory { index: 0, .. })
        ));

        let image = segs(vec![
            load(0x1000, 0x10_0000, 0x2000, 0x3000),
            load(0x3000, 0x10_2000, 0x800, 0x800),
        ]);
        assert_eq!(
            plan(&image),
            Err(Mb2Error::SegmentsOverlap {
                first: 0,
                second: 1,
                first_range: (0x10_0000, 0x10_3000),
                second_range: (0x10_2000, 0x10_2800)
            })
        );

        let notes_only = vec![Ph {
            p_type: elf::abi::PT_NOTE,
            offset: 0x1000,
            vaddr: 0,
            paddr: 0,
            filesz: 0x2000,
            memsz: 0,
        }];
        assert_eq!(plan(&segs(notes_only)), Err(Mb2Error::NoLoadSegments));

        let many: Vec<Ph> = (0..MAX_SEGMENTS as u64 + 1)
            .map(|i| load(0x1000, 0x10_0000 + i * 0x1_0000, 0x100, 0x100))
            .collect();
        assert_eq!(
            plan(&segs(many)),
            Err(Mb2Error::TooManySegments { max: MAX_SEGMENTS })
        );

        let image = elf(false, &two_segments(), 0x50_0000, &header);
        let err = plan(&image).unwrap_err();
        assert_eq!(err, Mb2Error::EntryOutsideSegments { entry: 0x50_0000 });
        assert_eq!(
            err.to_string(),
            "the kernel's entry point 0x500000 is not inside a loaded segment"
        );

        // An ELF64 whose entry segment is at 4 GiB - 4 KiB ... 4 GiB is fine; a virtual
        // entry that translates above 4 GiB cannot happen once segments are below it.
        let image = elf(
            true,
            &[load(0x1000, 0xffff_e000, 0x2000, 0x2000)],
            0xffff_fff0,
            &header,
        );
        assert_eq!(plan(&image).unwrap().entry, 0xffff_fff0);
    }

    #[test]
    fn multiboot2_elf_header_checks() {
        let header = standard_header();
        let mut image = elf(false, &two_segments(), 0x10_0020, &header);
        put(&mut image, 18, &elf::abi::EM_X86_64.to_le_bytes());
        assert_eq!(
            plan(&image),
            Err(Mb2Error::ElfMachine {
                class_bits: 32,
                machine: elf::abi::EM_X86_64
            })
        );

        let mut image = elf(false, &two_segments(), 0x10_0020, &header);
        put(&mut image, 16, &elf::abi::ET_REL.to_le_bytes());
        assert_eq!(
            plan(&image),
            Err(Mb2Error::ElfType {
                e_type: elf::abi::ET_REL
            })
        );

        let mut image = elf(false, &two_segments(), 0x10_0020, &header);
        put(&mut image, 42, &40u16.to_le_bytes());
        assert_eq!(
            plan(&image),
            Err(Mb2Error::ElfPhentsize {
                phentsize: 40,
                expected: 32
            })
        );

        let mut image = elf(false, &two_segments(), 0x10_0020, &header);
        image[elf::abi::EI_DATA] = 2; // big-endian
        assert!(matches!(plan(&image), Err(Mb2Error::BadElf { .. })));

        // Neither ELF nor an address tag.
        let mut image = elf(false, &two_segments(), 0x10_0020, &header);
        image[0] = 0;
        assert_eq!(plan(&image), Err(Mb2Error::NotElf));
    }

    #[test]
    fn multiboot2_relocatable() {
        let header = mb2_header(&[relocatable_tag(0x10_0000, 0x1000_0000, 0x20_0000, 1)]);
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        let plan = plan(&image).unwrap();
        let reloc = plan.relocatable.unwrap();
        assert_eq!(
            reloc,
            Relocatable {
                min_addr: 0x10_0000,
                max_addr: 0x1000_0000,
                align: 0x20_0000,
                preference: RelocPreference::Lowest
            }
        );
        // Loaded where it was linked: inside the window, but 1 MiB is not 2 MiB-aligned,
        // which only matters for a move.
        assert!(!reloc.allows(plan.image_range().start, plan.image_range().end));

        let moved = plan.shifted(0x10_0000).unwrap();
        assert_eq!(moved.entry, 0x20_0020);
        assert_eq!(moved.segments[0].dest, 0x20_0000);
        assert_eq!(moved.segments[1].dest, 0x30_0000);
        assert_eq!(moved.segments[0].file_offset, plan.segments[0].file_offset);
        assert_eq!(moved.image_range(), 0x20_0000..0x30_1000);

        assert_eq!(
            plan.shifted(0x30_0000).unwrap().image_range(),
            0x40_0000..0x50_1000
        );
        assert!(matches!(
            plan.shifted(0x8_0000),
            Err(Mb2Error::RelocationMisaligned {
                base: 0x18_0000,
                ..
            })
        ));
        assert!(matches!(
            plan.shifted(-0x10_0000),
            Err(Mb2Error::RelocationOutOfRange { base: 0, .. })
        ));
        assert!(matches!(
            plan.shifted(0x1000_0000),
            Err(Mb2Error::RelocationOutOfRange { .. })
        ));
        assert!(matches!(
            plan.shifted(i64::MIN),
            Err(Mb2Error::RelocationOutOfRange { .. })
        ));

        let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[]));
        assert_eq!(
            super::plan(&image).unwrap().shifted(0x10_0000),
            Err(Mb2Error::NotRelocatable)
        );

        // Unknown preferences are hints parkboot ignores.
        let header = mb2_header(&[relocatable_tag(0, u32::MAX, 0, 7)]);
        let image = elf(false, &two_segments(), 0x10_0020, &header);
        assert_eq!(
            super::plan(&image).unwrap().relocatable.unwrap().preference,
            RelocPreference::NoPreference
        );
    }

    #[test]
    fn multiboot2_flipped_header_bytes_never_panic() {
        let header = mb2_header(&[
            info_request(0, &[TAG_CMDLINE]),
            address_tag(0x10_1040, 0x10_0000, 0, 0x20_0000),
            entry_tag(0x10_0000),
            relocatable_tag(0, u32::MAX, 0x1000, 0),
        ]);
        let image = elf(true, &two_segments(), 0x10_0020, &header);
        for at in (0..MB2_AT + header.len()).step_by(3) {
            for bit in [0x01, 0x80, 0xff] {
                let mut m = image.clone();
                m[at] ^= bit;
                let _ = plan(&m);
            }
        }
    }

    // ---- gzip ----------------------------------------------------------------------------

    /// `kernel.txt` compressed by `gzip -9` (FNAME set, mtime 2024-01-01).
    const GZIP_VECTOR: [u8; 74] = [
        0x1f, 0x8b, 0x08, 0x08, 0x80, 0x00, 0x92, 0x65, 0x02, 0x03, 0x6b, 0x65, 0x72, 0x6e, 0x65,
        0x6c, 0x2e, 0x74, 0x78, 0x74, 0x00, 0x2b, 0x48, 0x2c, 0xca, 0x4e, 0xca, 0xcf, 0x2f, 0x51,
        0x00, 0x11, 0xc5, 0x0a, 0xb9, 0xa5, 0x39, 0x25, 0x99, 0x20, 0xa6, 0x91, 0x42, 0x76, 0x6a,
        0x51, 0x5e, 0x6a, 0x4e, 0xb1, 0x8e, 0x42, 0x62, 0x7a, 0x62, 0x66, 0x9e, 0x42, 0x62, 0x5e,
        0x0a, 0x84, 0xa5, 0xc7, 0x05, 0x00, 0x9f, 0x8f, 0x4a, 0x00, 0x34, 0x00, 0x00, 0x00,
    ];
    const GZIP_VECTOR_TEXT: &[u8] = b"parkboot boots multiboot2 kernels, again and again.\n";

    #[test]
    fn multiboot2_crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(GZIP_VECTOR_TEXT), 0x004a_8f9f);
    }

    #[test]
    fn multiboot2_gzip_vector_from_the_gzip_command() {
        assert!(is_gzip(&GZIP_VECTOR));
        assert_eq!(gzip_inflated_size(&GZIP_VECTOR), Ok(GZIP_VECTOR_TEXT.len()));
        let mut out = vec![0u8; GZIP_VECTOR_TEXT.len()];
        assert_eq!(
            inflate_gzip(&GZIP_VECTOR, &mut out),
            Ok(GZIP_VECTOR_TEXT.len())
        );
        assert_eq!(out, GZIP_VECTOR_TEXT);
    }

    /// Wraps raw deflate data in a gzip member with every optional header field.
    fn gzip_member(data: &[u8], level: u8) -> Vec<u8> {
        let deflated = miniz_oxide::deflate::compress_to_vec(data, level);
        let mut g = vec![
            GZIP_ID1,
            GZIP_ID2,
            GZIP_METHOD_DEFLATE,
            GZIP_FEXTRA | GZIP_FNAME | GZIP_FCOMMENT | GZIP_FHCRC,
        ];
        g.extend([0, 0, 0, 0, 0, 3]); // mtime, xfl, os
        g.extend(4u16.to_le_bytes());
        g.extend(b"AB\x00\x00");
        g.extend(b"xen.gz\0");
        g.extend(b"a test kernel\0");
        let hcrc = crc32(&g) as u16;
        g.extend(hcrc.to_le_bytes());
        g.extend(deflated);
        g.extend(crc32(data).to_le_bytes());
        g.extend((data.len() as u32).to_le_bytes());
        g
    }

    fn kernel_like_data() -> Vec<u8> {
        // Compressible but not trivial: a pseudo-random walk over a small alphabet.
        let mut x = 0x1234_5678u32;
        (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b"\x00\x90\xc3\x48\x89\xe5"[(x % 6) as usize]
            })
            .collect()
    }

    #[test]
    fn multiboot2_gzip_round_trip() {
        let data = kernel_like_data();
        for level in [1, 6, 10] {
            let gz = gzip_member(&data, level);
            assert_eq!(gzip_inflated_size(&gz), Ok(data.len()));
            let mut out = vec![0u8; data.len()];
            assert_eq!(inflate_gzip(&gz, &mut out), Ok(data.len()));
            assert_eq!(out, data);
        }
        // Empty data.
        let gz = gzip_member(&[], 6);
        assert_eq!(gzip_inflated_size(&gz), Ok(0));
        assert_eq!(inflate_gzip(&gz, &mut []), Ok(0));
        // Larger than the counting pass's window many times over, and a trailing byte
        // after the member (padding) is ignored.
        let big: Vec<u8> = kernel_like_data().repeat(6);
        let mut gz = gzip_member(&big, 6);
        gz.push(0);
        assert_eq!(gzip_inflated_size(&gz), Ok(big.len()));
    }

    /// The counting pass's answer for a damaged member; inflating it into a buffer of
    /// the intact size is refused too (perhaps for a different reason: a corrupt
    /// stream may run past a buffer sized for the intact data).
    fn both(gz: &[u8], out: &mut [u8]) -> Result<usize, Mb2Error> {
        let counted = gzip_inflated_size(gz);
        let inflated = inflate_gzip(gz, out);
        assert_eq!(
            counted.is_ok(),
            inflated.is_ok(),
            "{counted:?} / {inflated:?}"
        );
        counted
    }

    /// The issue's reproduction: a truncated gzip kernel sized a buffer from the bytes
    /// that happened to sit where its trailer should be.
    #[test]
    fn multiboot2_gzip_truncated_stream_sizes_nothing() {
        let data = kernel_like_data();
        let gz = gzip_member(&data, 6);
        let body = gzip_body_start(&gz).unwrap();
        let mut out = vec![0u8; data.len()];
        // Every cut inside the deflate stream: refused by name, and no size comes out.
        for len in (body..gz.len() - GzipTrailer::SIZE).step_by(1021) {
            let err = both(&gz[..len], &mut out).unwrap_err();
            assert_eq!(err, Mb2Error::GzipStreamUnfinished { len }, "cut at {len}");
            assert!(err.to_string().contains("truncated"), "{err}");
        }
        // Cut in the trailer: the stream ended, the trailer is missing.
        for len in gz.len() - GzipTrailer::SIZE..gz.len() {
            assert_eq!(
                both(&gz[..len], &mut out),
                Err(Mb2Error::GzipTruncated { what: "trailer" })
            );
        }
    }

    /// The issue's second row: flipped bytes said "output buffer too small"; they are
    /// corruption and say so.
    #[test]
    fn multiboot2_gzip_flipped_bytes_say_corrupt() {
        let data = kernel_like_data();
        let gz = gzip_member(&data, 6);
        let body = gzip_body_start(&gz).unwrap();
        let mut out = vec![0u8; data.len()];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut corrupt = 0;
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let a = body + (seed as usize % (gz.len() - body));
            let b = body + ((seed >> 32) as usize % (gz.len() - body));
            let mut bad = gz.clone();
            bad[a] ^= 1 << (seed % 8);
            bad[b] ^= 1 << ((seed >> 8) % 8);
            if bad == gz {
                continue;
            }
            let err = both(&bad, &mut out).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("corrupt"), "flip at {a}, {b}: {text}");
            assert!(
                !matches!(err, Mb2Error::GzipOutputTooSmall { .. }),
                "{text}"
            );
            corrupt += 1;
        }
        assert!(corrupt > 190);
        // A buffer sized by the counting pass is never too small for a corrupt stream
        // that inflates to more than its trailer says: the counting pass refuses it.
        let mut longer = gzip_member(&data, 6);
        let isize_at = longer.len() - size_of::<u32>();
        longer[isize_at..].copy_from_slice(&(data.len() as u32 - 1).to_le_bytes());
        assert_eq!(
            gzip_inflated_size(&longer),
            Err(Mb2Error::GzipSizeMismatch {
                stored: data.len() as u32 - 1,
                actual: data.len() as u64
            })
        );
    }

    #[test]
    fn multiboot2_gzip_errors() {
        let data = kernel_like_data();
        let gz = gzip_member(&data, 6);
        let body = gzip_body_start(&gz).unwrap();
        let mut out = vec![0u8; data.len()];

        // Block type 3 is reserved: corrupt right at the first deflate byte.
        let mut bad = gz.clone();
        bad[body] = 0b111;
        let err = inflate_gzip(&bad, &mut out).unwrap_err();
        assert!(
            matches!(err, Mb2Error::GzipCorrupt { at } if at >= body && at <= body + 1),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("gzip data corrupt at byte "));

        // Flipped bytes anywhere in the stream: always refused, never a panic.
        for at in (body..gz.len() - GzipTrailer::SIZE).step_by(97) {
            let mut bad = gz.clone();
            bad[at] ^= 0x55;
            assert!(inflate_gzip(&bad, &mut out).is_err(), "flip at {at}");
        }

        let mut bad = gz.clone();
        let crc_at = gz.len() - GzipTrailer::SIZE;
        bad[crc_at] ^= 1;
        assert_eq!(
            inflate_gzip(&bad, &mut out),
            Err(Mb2Error::GzipCrcMismatch {
                stored: crc32(&data) ^ 1,
                computed: crc32(&data)
            })
        );

        let mut bad = gz.clone();
        let isize_at = gz.len() - size_of::<u32>();
        bad[isize_at] ^= 1;
        assert!(matches!(
            inflate_gzip(&bad, &mut out),
            Err(Mb2Error::GzipSizeMismatch { .. })
        ));

        // Truncated: in the trailer, in the deflate stream, in the header.
        assert_eq!(
            inflate_gzip(&gz[..gz.len() - 3], &mut out),
            Err(Mb2Error::GzipTruncated { what: "trailer" })
        );
        assert_eq!(
            inflate_gzip(&gz[..body + 100], &mut out),
            Err(Mb2Error::GzipStreamUnfinished { len: body + 100 })
        );
        assert_eq!(
            inflate_gzip(&gz[..5], &mut out),
            Err(Mb2Error::GzipTruncated { what: "header" })
        );
        assert_eq!(
            inflate_gzip(&gz[..14], &mut out),
            Err(Mb2Error::GzipTruncated {
                what: "extra field"
            })
        );
        assert_eq!(
            inflate_gzip(&gz[..18], &mut out),
            Err(Mb2Error::GzipTruncated { what: "file name" })
        );
        // Every cut of a small member, and a sample of the large one, is refused.
        let mut small_out = [0u8; 64];
        for len in 0..GZIP_VECTOR.len() {
            assert!(
                inflate_gzip(&GZIP_VECTOR[..len], &mut small_out).is_err(),
                "{len}"
            );
        }
        for len in (0..gz.len()).step_by(4099) {
            assert!(inflate_gzip(&gz[..len], &mut out).is_err(), "{len}");
        }

        let mut small = vec![0u8; data.len() - 1];
        let err = inflate_gzip(&gz, &mut small).unwrap_err();
        assert_eq!(
            err,
            Mb2Error::GzipOutputTooSmall {
                available: data.len() - 1
            }
        );
        assert!(err.to_string().contains("199999"));

        let mut bad = gz.clone();
        bad[body - 1] ^= 1; // the header CRC
        assert!(matches!(
            inflate_gzip(&bad, &mut out),
            Err(Mb2Error::GzipHeaderCrc { .. })
        ));

        assert_eq!(
            inflate_gzip(b"PK\x03\x04", &mut out),
            Err(Mb2Error::GzipBadMagic)
        );
        assert!(!is_gzip(b"\x1f"));
        assert_eq!(
            gzip_inflated_size(b"\x7fELF...."),
            Err(Mb2Error::GzipBadMagic)
        );
        assert_eq!(
            gzip_inflated_size(&GZIP_VECTOR[..6]),
            Err(Mb2Error::GzipTruncated { what: "header" })
        );

        let mut bad = gz.clone();
        bad[offset_of!(GzipHeader, method)] = 0;
        assert_eq!(
            inflate_gzip(&bad, &mut out),
            Err(Mb2Error::GzipMethod { method: 0 })
        );
        let mut bad = gz.clone();
        bad[offset_of!(GzipHeader, flags)] |= 0x80;
        assert!(matches!(
            inflate_gzip(&bad, &mut out),
            Err(Mb2Error::GzipReservedFlags { .. })
        ));
    }

    #[test]
    fn multiboot2_gzip_kernel_then_plan() {
        let image = elf(false, &two_segments(), 0x10_0020, &standard_header());
        let gz = gzip_member(&image, 9);
        let mut out = vec![0u8; gzip_inflated_size(&gz).unwrap()];
        let len = inflate_gzip(&gz, &mut out).unwrap();
        assert_eq!(plan(&out[..len]).unwrap().segments, expected_two_segments());
    }

    // ---- boot information ----------------------------------------------------------------

    #[repr(C, align(8))]
    struct Aligned([u8; 1024]);

    fn rsdp_v2() -> [u8; RSDP_V2_SIZE] {
        let mut r = [0u8; RSDP_V2_SIZE];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[9..15].copy_from_slice(b"PARKBT");
        r[15] = 2; // revision
        r[20..24].copy_from_slice(&(RSDP_V2_SIZE as u32).to_le_bytes());
        r[24..32].copy_from_slice(&0x1fbb_6028u64.to_le_bytes());
        let sum20: u8 = r[..20].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        r[8] = 0u8.wrapping_sub(sum20);
        let sum36: u8 = r.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        r[32] = 0u8.wrapping_sub(sum36);
        r
    }

    #[test]
    fn multiboot2_boot_information_parsed_by_the_multiboot2_crate() {
        let mut buf = Aligned([0xAA; 1024]);
        let park_tag = Multiboot2ParkbootTag {
            tag_type: 0,
            size: 0,
            park_table: 0x1fbc_6000,
            park_table_version: 1,
            iteration: 2,
            iterations: 5,
            reserved: 0,
        };
        let map = [
            (0u64, 0x9fc00u64, MEMORY_AVAILABLE),
            (0xf0000, 0x10000, MEMORY_RESERVED),
            (0x10_0000, 0x1ff0_0000, MEMORY_AVAILABLE),
            (0x1ffd_e000, 0x1000, MEMORY_NVS),
        ];
        let mut info = InfoBuilder::new(&mut buf.0);
        info.cmdline("console=com1 dom0_mem=512M")
            .loader_name("parkboot 0.1.0")
            .module(0x200_0000, 0x210_0000, "initrd")
            .module(0x300_0000, 0x300_1000, "")
            .basic_meminfo(639, 523_200)
            .memory_map(map.iter().copied())
            .acpi_old_rsdp(rsdp_v2()[..RSDP_V1_SIZE].try_into().unwrap())
            .acpi_new_rsdp(&rsdp_v2())
            .raw_tag(0x1234_5678, b"hello")
            .parkboot_tag(&park_tag);
        assert_eq!(info.error(), None);
        let total = info.finish().unwrap();
        assert_eq!(total % TAG_ALIGN, 0);
        assert_eq!(
            u32::from_le_bytes(buf.0[..4].try_into().unwrap()) as usize,
            total
        );
        assert_eq!(&buf.0[4..8], &[0; 4]);
        assert_eq!(&buf.0[total - 8..total], &[0, 0, 0, 0, 8, 0, 0, 0]);

        // SAFETY: `buf` is 8-aligned, holds `total` bytes of boot information and is
        // not changed while `mbi` lives.
        let mbi = unsafe { multiboot2::BootInformation::load(buf.0.as_ptr().cast()) }.unwrap();
        assert_eq!(mbi.total_size(), total);
        assert_eq!(
            mbi.command_line_tag().unwrap().cmdline(),
            Ok("console=com1 dom0_mem=512M")
        );
        assert_eq!(
            mbi.boot_loader_name_tag().unwrap().name(),
            Ok("parkboot 0.1.0")
        );
        let modules: Vec<_> = mbi
            .module_tags()
            .map(|m| {
                (
                    m.start_address(),
                    m.end_address(),
                    m.cmdline().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            modules,
            vec![
                (0x200_0000, 0x210_0000, "initrd".to_string()),
                (0x300_0000, 0x300_1000, String::new())
            ]
        );
        let meminfo = mbi.basic_memory_info_tag().unwrap();
        assert_eq!(
            (meminfo.memory_lower(), meminfo.memory_upper()),
            (639, 523_200)
        );
        let mmap = mbi.memory_map_tag().unwrap();
        assert_eq!(mmap.entry_size(), 24);
        assert_eq!(mmap.entry_version(), 0);
        let areas: Vec<_> = mmap
            .memory_areas()
            .iter()
            .map(|a| (a.start_address(), a.size(), a.typ().val()))
            .collect();
        assert_eq!(areas, map.to_vec());
        let v1 = mbi.rsdp_v1_tag().unwrap();
        assert_eq!(v1.signature(), Ok("RSD PTR "));
        assert!(v1.checksum_is_valid());
        let v2 = mbi.rsdp_v2_tag().unwrap();
        assert_eq!(v2.signature(), Ok("RSD PTR "));
        assert_eq!(v2.oem_id(), Ok("PARKBT"));
        assert_eq!(v2.revision(), 2);
        assert_eq!(v2.xsdt_address(), 0x1fbb_6028);
        assert!(v2.checksum_is_valid());

        let raw = mbi
            .tags()
            .find(|t| t.header().typ.get() == 0x1234_5678)
            .unwrap();
        assert_eq!(raw.header().size, 13);
        assert_eq!(&raw.payload()[..5], b"hello");

        let park = mbi
            .tags()
            .find(|t| t.header().typ.get() == MULTIBOOT2_TAG_TYPE_PARKBOOT)
            .unwrap();
        assert_eq!(
            park.header().size as usize,
            size_of::<Multiboot2ParkbootTag>()
        );
        let p = park.payload();
        let field = |name: usize| name - InfoTagHeader::SIZE;
        let at = field(offset_of!(Multiboot2ParkbootTag, park_table));
        assert_eq!(
            u64::from_le_bytes(p[at..at + 8].try_into().unwrap()),
            0x1fbc_6000
        );
        let at = field(offset_of!(Multiboot2ParkbootTag, iteration));
        assert_eq!(u32::from_le_bytes(p[at..at + 4].try_into().unwrap()), 2);
        let at = field(offset_of!(Multiboot2ParkbootTag, iterations));
        assert_eq!(u32::from_le_bytes(p[at..at + 4].try_into().unwrap()), 5);
    }

    #[test]
    fn multiboot2_raw_tag_matches_parkboot_tag() {
        // The byte-view path the bare-metal side may use gives the same bytes.
        let tag = Multiboot2ParkbootTag {
            tag_type: MULTIBOOT2_TAG_TYPE_PARKBOOT,
            size: size_of::<Multiboot2ParkbootTag>() as u32,
            park_table: 0x1234_5000,
            park_table_version: 1,
            iteration: 1,
            iterations: 3,
            reserved: 0,
        };
        let mut a = [0u8; 128];
        let mut b = [0u8; 128];
        let mut info = InfoBuilder::new(&mut a);
        info.parkboot_tag(&tag);
        let la = info.finish().unwrap();
        // SAFETY: a #[repr(C)] struct of integers without padding, viewed as bytes.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                (&tag as *const Multiboot2ParkbootTag).cast::<u8>(),
                size_of::<Multiboot2ParkbootTag>(),
            )
        };
        let mut info = InfoBuilder::new(&mut b);
        info.raw_tag(MULTIBOOT2_TAG_TYPE_PARKBOOT, &bytes[InfoTagHeader::SIZE..]);
        let lb = info.finish().unwrap();
        assert_eq!(a[..la], b[..lb]);
        assert_eq!(
            a[BootInfoHeader::SIZE..BootInfoHeader::SIZE + size_of::<Multiboot2ParkbootTag>()],
            *bytes
        );
    }

    #[test]
    fn multiboot2_boot_information_errors() {
        // Too small for a tag: the error says which and how much.
        let mut buf = [0u8; 32];
        let mut info = InfoBuilder::new(&mut buf);
        info.cmdline("a command line longer than the buffer")
            .loader_name("x");
        let err = info.finish().unwrap_err();
        assert_eq!(
            err,
            Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_CMDLINE,
                needed: 56,
                available: 32
            }
        );
        assert!(err.to_string().contains("tag 1 (command line)"));

        // Too small for the end tag.
        let mut buf = [0u8; 24];
        let mut info = InfoBuilder::new(&mut buf);
        info.basic_meminfo(1, 2);
        assert_eq!(
            info.finish(),
            Err(Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_END,
                needed: 32,
                available: 24
            })
        );

        // A memory map that does not fit counts every entry for `needed`.
        let mut buf = [0u8; 64];
        let mut info = InfoBuilder::new(&mut buf);
        info.memory_map((0..10u64).map(|i| (i << 20, 1 << 20, MEMORY_AVAILABLE)));
        assert_eq!(
            info.finish(),
            Err(Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_MMAP,
                needed: 8 + 16 + 240,
                available: 64
            })
        );

        let mut buf = [0u8; 128];
        let mut info = InfoBuilder::new(&mut buf);
        info.acpi_new_rsdp(&[0; 20]);
        assert_eq!(
            info.finish(),
            Err(Mb2Error::InfoRsdpLength {
                tag_type: TAG_ACPI_NEW,
                len: 20,
                expected: RSDP_V2_SIZE
            })
        );

        // Nothing but the end tag.
        let mut buf = [0u8; 16];
        let info = InfoBuilder::new(&mut buf);
        assert!(info.is_empty());
        assert_eq!(info.finish(), Ok(16));
        assert_eq!(buf, [16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0]);
    }

    #[test]
    fn multiboot2_tags_are_8_aligned_and_padding_is_zero() {
        let mut buf = [0xAAu8; 256];
        let mut info = InfoBuilder::new(&mut buf);
        info.cmdline("abc")
            .loader_name("")
            .module(1, 2, "xy")
            .raw_tag(77, &[1; 3]);
        let total = info.finish().unwrap();
        // Walk the tags: every one starts 8-aligned, padding is zero, end tag last.
        let mut at = BootInfoHeader::SIZE;
        let mut types = Vec::new();
        loop {
            let h = InfoTagHeader::read_at(&buf, at).unwrap();
            types.push(h.tag_type);
            let end = at + h.size as usize;
            let padded = align_up(end, TAG_ALIGN).unwrap();
            assert!(buf[end..padded].iter().all(|&b| b == 0));
            if h.tag_type == TAG_END {
                assert_eq!(padded, total);
                break;
            }
            at = padded;
        }
        assert_eq!(
            types,
            vec![TAG_CMDLINE, TAG_BOOT_LOADER_NAME, TAG_MODULE, 77, TAG_END]
        );
        assert_eq!(&buf[8..20], &[1, 0, 0, 0, 12, 0, 0, 0, b'a', b'b', b'c', 0]);
    }

    #[test]
    fn multiboot2_error_messages_name_the_place() {
        let cases = [
            (Mb2Error::BadChecksum { offset: 0x1000, sum: 0x1234_5678 }, "multiboot2 header at offset 0x1000: checksum does not sum to zero (0x12345678)"),
            (Mb2Error::GzipCorrupt { at: 1234 }, "gzip data corrupt at byte 1234"),
            (
                Mb2Error::SegmentPastFile { index: 2, dest: 0x10_0000, end: 0x18_0000, file_offset: 0x1000, file_end: 0x81000, file_size: 0x50000 },
                "ELF segment 2 (0x100000-0x180000) runs past the end of the file: file bytes 0x1000-0x81000 (file size 0x50000)",
            ),
            (Mb2Error::MissingEntryTag, "the multiboot2 header has an address tag but no entry address tag"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }
}

#[cfg(test)]
mod basic_meminfo_tests {
    use super::*;
    use crate::memory::Lifetime;
    use crate::platform::{MemoryKind, MemoryRegion};

    const MIB: u64 = 1 << 20;

    fn map(regions: &[(u64, u64, MemoryKind)]) -> MemoryMap {
        let regions: Vec<MemoryRegion> = regions
            .iter()
            .map(|&(start, size, kind)| MemoryRegion { start, size, kind })
            .collect();
        MemoryMap::new(&regions).unwrap()
    }

    /// The map coreboot 4.15 gives on QEMU q35: page 0 is its tables (interrupt
    /// table, BIOS data area, forwarding table at 0x500), then RAM to 0xA0000.
    fn coreboot_q35() -> MemoryMap {
        map(&[
            (0, 0x1000, MemoryKind::CorebootTables),
            (0x1000, 0x9f000, MemoryKind::Usable),
            (0xa0000, 0x60000, MemoryKind::Reserved),
            (MIB, 2047 * MIB, MemoryKind::Usable),
        ])
    }

    #[test]
    fn coreboot_page_zero_does_not_end_low_memory() {
        // Before: 0, so Xen fell back to the BIOS data area (1024 KiB under coreboot)
        // and put its trampoline over coreboot's RSDP at 0xF0000.
        let info = basic_meminfo(&coreboot_q35());
        assert_eq!(info.lower_kib, 640);
        assert_eq!(info.upper_kib, 2047 * 1024);
    }

    #[test]
    fn parkboot_ap_trampoline_ends_low_memory() {
        let mut memory = coreboot_q35();
        memory
            .reserve(
                0x9f000,
                0x1000,
                "AP start trampoline",
                ReportAs::Reserved,
                Lifetime::Permanent,
            )
            .unwrap();
        assert_eq!(basic_meminfo(&memory).lower_kib, 0x9f000 / 1024);
    }

    #[test]
    fn bios_map_with_ebda() {
        let memory = map(&[
            (0, 0x9fc00, MemoryKind::Usable),
            (0x9fc00, 0x400, MemoryKind::Reserved),
            (0xf0000, 0x10000, MemoryKind::Reserved),
            (MIB, 511 * MIB, MemoryKind::Usable),
        ]);
        assert_eq!(
            basic_meminfo(&memory),
            BasicMeminfo {
                lower_kib: 639,
                upper_kib: 511 * 1024
            }
        );
    }

    #[test]
    fn low_memory_that_starts_late_is_not_conventional_memory() {
        let memory = map(&[
            (0, 0x10000, MemoryKind::Reserved),
            (0x10000, 0x90000, MemoryKind::Usable),
            (MIB, MIB, MemoryKind::Usable),
        ]);
        assert_eq!(basic_meminfo(&memory).lower_kib, 0);
    }

    #[test]
    fn never_past_640_kib_and_boot_loads_stay_usable() {
        let mut memory = map(&[(0, 4 * MIB, MemoryKind::Usable)]);
        // A kernel's own load area is usable for it and ends nothing.
        memory
            .reserve(
                0x2000,
                0x1000,
                "multiboot2 module",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(
            basic_meminfo(&memory),
            BasicMeminfo {
                lower_kib: 640,
                upper_kib: 3 * 1024
            }
        );
    }

    #[test]
    fn no_low_ram_at_all() {
        let memory = map(&[(MIB, MIB, MemoryKind::Usable)]);
        assert_eq!(
            basic_meminfo(&memory),
            BasicMeminfo {
                lower_kib: 0,
                upper_kib: 1024
            }
        );
    }
}
