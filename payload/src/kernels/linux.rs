//! Loading a Linux x86 bzImage through the 64-bit boot protocol.
//!
//! parkboot starts Linux at the kernel's 64-bit entry point and never runs the
//! bzImage's real-mode setup code: parkboot is already in long mode with its own page
//! tables, and leaving long mode just so the kernel can re-enter it would add a mode
//! switch that has to work under both coreboot and PVH. This module is the
//! hardware-free half of a Linux boot:
//!
//! - [`parse`] checks that an image is a bzImage with the 64-bit entry and reads what
//!   placing it needs;
//! - [`place_kernel`] and [`place_initrd`] choose addresses in parkboot's
//!   [`MemoryMap`] without changing it (the caller reserves what they return);
//! - [`e820_from_kernel_view`] turns the map the kernel is shown into e820 entries;
//! - [`build_boot_params`] fills the 4 KiB `boot_params` page ("zero page").
//!
//! The bare-metal side then copies [`Kernel::protected_mode`] to the load address and
//! jumps to `load address + LINUX_64BIT_ENTRY_OFFSET` in 64-bit mode with `rsi` =
//! boot_params, CS = [`BOOT_CS`], DS/ES/SS = [`BOOT_DS`] (both flat), interrupts off,
//! and an identity map covering the kernel's [`Kernel::memory_size`] bytes from the load
//! address, the boot_params page and the command line.
//!
//! Layouts and rules follow Linux's boot protocol (Documentation/arch/x86/boot.rst and
//! arch/x86/include/uapi/asm/bootparam.h); every offset is checked at compile time
//! against the protocol's tables. The image is untrusted: every read is bounds-checked
//! and all address arithmetic is checked, so a malformed image is an error, never a
//! panic.

use core::fmt;
use core::mem::{offset_of, size_of};
use core::ops::Range;

use crate::memory::{align_up, MemoryMap, ReportAs, FOUR_GIB, MIB, PAGE_SIZE};
use crate::wire::{wire_struct, WireField};

mod placement;
pub mod prepare;
use placement::initrd_limit;
pub use placement::{e820_from_kernel_view, place_initrd, place_kernel};

/// The kernel's 64-bit entry point is this far into the loaded protected-mode kernel
/// (boot protocol, "64-bit Boot Protocol").
pub const LINUX_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// Code selector the kernel expects at its 64-bit entry (`__BOOT_CS`): parkboot's GDT
/// must have a flat code descriptor at this selector when it jumps to Linux.
pub const BOOT_CS: u16 = 0x10;
/// Data selector the kernel expects in DS, ES and SS at its 64-bit entry (`__BOOT_DS`).
pub const BOOT_DS: u16 = 0x18;

/// `boot_flag`: the value at 0x1FE of every bzImage (the old boot-sector signature).
pub const BOOT_FLAG: u16 = 0xAA55;
/// `header`: the setup-header signature "HdrS" at 0x202.
pub const HEADER_MAGIC: [u8; 4] = *b"HdrS";

/// Boot protocol 2.12 (Linux 3.8): the first with `xloadflags`, and so the first that
/// can announce the 64-bit entry and loading above 4 GiB.
pub const PROTOCOL_2_12: u16 = 0x020C;
/// The oldest boot protocol parkboot loads.
pub const MIN_PROTOCOL: u16 = PROTOCOL_2_12;

/// `xloadflags`: the kernel has the 64-bit entry at [`LINUX_64BIT_ENTRY_OFFSET`].
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags`: the kernel, boot_params, the command line and the initrd may lie above
/// 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// `xloadflags`: the kernel has a 32-bit EFI handover entry (unused by parkboot).
pub const XLF_EFI_HANDOVER_32: u16 = 1 << 2;
/// `xloadflags`: the kernel has a 64-bit EFI handover entry (unused by parkboot).
pub const XLF_EFI_HANDOVER_64: u16 = 1 << 3;
/// `xloadflags`: the kernel supports kexec with EFI runtime services (unused by
/// parkboot).
pub const XLF_EFI_KEXEC: u16 = 1 << 4;
/// `xloadflags`: the kernel can run with 5-level paging.
pub const XLF_5LEVEL: u16 = 1 << 5;
/// `xloadflags`: the kernel was built with 5-level paging enabled.
pub const XLF_5LEVEL_ENABLED: u16 = 1 << 6;

/// `loadflags`: the protected-mode kernel is loaded high (at or above 1 MiB), which is
/// what a bzImage is.
pub const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags`: kernel-internal KASLR status; parkboot passes the image's value on.
pub const KASLR_FLAG: u8 = 1 << 1;
/// `loadflags`: asks the kernel not to print early messages to the display.
pub const QUIET_FLAG: u8 = 1 << 5;
/// `loadflags`: obsolete.
pub const KEEP_SEGMENTS: u8 = 1 << 6;
/// `loadflags`: `heap_end_ptr` is valid. Only the real-mode setup code uses the heap,
/// and parkboot skips it, so parkboot always clears this flag.
pub const CAN_USE_HEAP: u8 = 1 << 7;

/// `type_of_loader` for a boot loader without an assigned ID. parkboot has none, and
/// the field is obligatory.
pub const TYPE_OF_LOADER_UNDEFINED: u8 = 0xFF;

/// Size of the boot_params page.
pub const BOOT_PARAMS_SIZE: usize = 0x1000;
/// How many e820 entries boot_params holds (`E820_MAX_ENTRIES_ZEROPAGE`).
pub const E820_MAX_ENTRIES: usize = 128;

/// The protocol's unit for the setup code size.
pub const SECTOR_SIZE: usize = 512;
/// `setup_sects` of 0 means this many sectors (very old kernels left the field zero).
pub const DEFAULT_SETUP_SECTS: u8 = 4;
/// The boot sector that precedes the setup code: the protected-mode kernel starts
/// after `setup_sects` plus this many sectors.
const BOOT_SECTOR_COUNT: usize = 1;

/// `syssize` counts the protected-mode kernel in 16-byte paragraphs.
const PARAGRAPH_SIZE: u64 = 16;

/// `kernel_version` is stored "less 0x200": the version string is at this much plus the
/// field's value in the image.
const KERNEL_VERSION_BASE: usize = 0x200;

/// Where a bzImage's protected-mode kernel traditionally runs: the load address of a
/// non-relocatable kernel that gives no `pref_address`.
pub const BZIMAGE_LOAD_ADDRESS: u64 = MIB;

/// A relocated kernel is placed at or above this address when possible: it keeps the
/// first 16 MiB, where legacy DMA and the kernel's own early allocations want room,
/// free, and it is where Linux's default `pref_address` lies anyway.
pub const KERNEL_SEARCH_START: u64 = 16 * MIB;
/// Lowest address for a relocated kernel if nothing fits above [`KERNEL_SEARCH_START`]:
/// below 1 MiB lie the real-mode areas Linux reserves for itself.
pub const KERNEL_SEARCH_FALLBACK_START: u64 = MIB;
/// A relocated kernel is kept below 4 GiB. The 64-bit entry works at any identity-mapped
/// address, but below 4 GiB parkboot's identity map of low memory always covers it and
/// the choice does not depend on [`XLF_CAN_BE_LOADED_ABOVE_4G`]; 4 GiB is enough room
/// for any kernel's `init_size`.
pub const KERNEL_SEARCH_LIMIT: u64 = FOUR_GIB;
/// The initrd is kept at or above 1 MiB: Linux reserves all memory below 1 MiB early
/// for its real-mode trampoline and firmware areas.
pub const INITRD_SEARCH_START: u64 = MIB;

wire_struct! {
    packed
    /// `struct setup_header`: the part of a bzImage's real-mode header a boot loader reads
    /// and fills in, at 0x1F1 both in the image and in boot_params. [`WireField`] reads it
    /// (`SetupHeader::SIZE` is the header as parkboot knows it, through protocol 2.15).
    pub struct SetupHeader {
        /// Size of the setup code in 512-byte sectors, 0 meaning 4.
        pub setup_sects: u8,
        pub root_flags: u16,
        /// Size of the protected-mode code in 16-byte paragraphs.
        pub syssize: u32,
        pub ram_size: u16,
        pub vid_mode: u16,
        pub root_dev: u16,
        /// [`BOOT_FLAG`].
        pub boot_flag: u16,
        /// A short jump whose offset byte also gives the header's length.
        pub jump: u16,
        /// [`HEADER_MAGIC`].
        pub header: [u8; 4],
        /// Boot protocol version, `major << 8 | minor`.
        pub version: u16,
        pub realmode_swtch: u32,
        pub start_sys_seg: u16,
        /// Offset of the version string, less 0x200.
        pub kernel_version: u16,
        pub type_of_loader: u8,
        pub loadflags: u8,
        pub setup_move_size: u16,
        /// 32-bit entry; the 64-bit entry does not use it.
        pub code32_start: u32,
        pub ramdisk_image: u32,
        pub ramdisk_size: u32,
        pub bootsect_kludge: u32,
        pub heap_end_ptr: u16,
        pub ext_loader_ver: u8,
        pub ext_loader_type: u8,
        pub cmd_line_ptr: u32,
        /// Highest address the initrd may occupy (inclusive).
        pub initrd_addr_max: u32,
        pub kernel_alignment: u32,
        pub relocatable_kernel: u8,
        pub min_alignment: u8,
        pub xloadflags: u16,
        /// Longest command line the kernel takes, without the terminating NUL.
        pub cmdline_size: u32,
        pub hardware_subarch: u32,
        pub hardware_subarch_data: u64,
        pub payload_offset: u32,
        pub payload_length: u32,
        pub setup_data: u64,
        pub pref_address: u64,
        /// Bytes the kernel needs from its load address before it reads the memory map.
        pub init_size: u32,
        pub handover_offset: u32,
        pub kernel_info_offset: u32,
    }
}

wire_struct! {
    packed
    /// `struct boot_e820_entry`: one memory range in boot_params.
    pub struct BootE820Entry {
        pub addr: u64,
        pub size: u64,
        /// e820 type: 1 usable, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, ...
        pub kind: u32,
    }
}

/// Where the `edd_mbr_sig_buffer` follows the hole reserved for the setup header: the
/// header may grow up to here.
const SETUP_HEADER_HOLE_END: usize = 0x290;
/// Where boot_params holds the setup header.
const SETUP_HEADER_OFFSET: usize = 0x1F1;

/// `struct boot_params`, the "zero page": everything a 64-bit-entry kernel is told.
/// parkboot fills it byte by byte in a 4 KiB buffer ([`build_boot_params`]); this type
/// is its layout, checked at compile time, and where every offset parkboot writes
/// comes from. Structures parkboot leaves zero are opaque byte arrays.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct BootParams {
    /// `struct screen_info`.
    pub screen_info: [u8; 0x40],
    /// `struct apm_bios_info`.
    pub apm_bios_info: [u8; 0x14],
    _pad2: [u8; 4],
    pub tboot_addr: u64,
    /// `struct ist_info`.
    pub ist_info: [u8; 0x10],
    /// Physical address of the ACPI RSDP; the kernel searches for one if zero.
    pub acpi_rsdp_addr: u64,
    _pad3: [u8; 8],
    pub hd0_info: [u8; 0x10],
    pub hd1_info: [u8; 0x10],
    /// `struct sys_desc_table`.
    pub sys_desc_table: [u8; 0x10],
    /// `struct olpc_ofw_header`.
    pub olpc_ofw_header: [u8; 0x10],
    /// Upper 32 bits of the initrd address.
    pub ext_ramdisk_image: u32,
    /// Upper 32 bits of the initrd size.
    pub ext_ramdisk_size: u32,
    /// Upper 32 bits of the command line address.
    pub ext_cmd_line_ptr: u32,
    _pad4: [u8; 116],
    /// `struct edid_info`.
    pub edid_info: [u8; 0x80],
    /// `struct efi_info`.
    pub efi_info: [u8; 0x20],
    pub alt_mem_k: u32,
    pub scratch: u32,
    /// Number of valid entries in `e820_table`.
    pub e820_entries: u8,
    pub eddbuf_entries: u8,
    pub edd_mbr_sig_buf_entries: u8,
    pub kbd_status: u8,
    pub secure_boot: u8,
    _pad5: [u8; 2],
    /// Nonzero in the image; a loader that copies more than the setup header leaves it
    /// set, which tells the kernel to distrust the rest of the page. parkboot zeroes it.
    pub sentinel: u8,
    _pad6: [u8; 1],
    pub hdr: SetupHeader,
    _pad7: [u8; SETUP_HEADER_HOLE_END - SETUP_HEADER_OFFSET - SetupHeader::SIZE],
    pub edd_mbr_sig_buffer: [u32; 16],
    pub e820_table: [BootE820Entry; E820_MAX_ENTRIES],
    _pad8: [u8; 48],
    /// `struct edd_info[6]`.
    pub eddbuf: [u8; 6 * 82],
    _pad9: [u8; 276],
}

/// Offset in boot_params (and in the image) of a setup header field.
macro_rules! hdr_offset {
    ($field:ident) => {
        offset_of!(BootParams, hdr) + offset_of!(SetupHeader, $field)
    };
}

// The layout of boot_params, field by field, against the protocol's tables.
const _: () = assert!(size_of::<BootParams>() == 0x1000);
const _: () = assert!(size_of::<BootParams>() == BOOT_PARAMS_SIZE);
const _: () = assert!(offset_of!(BootParams, screen_info) == 0x000);
const _: () = assert!(offset_of!(BootParams, apm_bios_info) == 0x040);
const _: () = assert!(offset_of!(BootParams, _pad2) == 0x054);
const _: () = assert!(offset_of!(BootParams, tboot_addr) == 0x058);
const _: () = assert!(offset_of!(BootParams, ist_info) == 0x060);
const _: () = assert!(offset_of!(BootParams, acpi_rsdp_addr) == 0x070);
const _: () = assert!(offset_of!(BootParams, _pad3) == 0x078);
const _: () = assert!(offset_of!(BootParams, hd0_info) == 0x080);
const _: () = assert!(offset_of!(BootParams, hd1_info) == 0x090);
const _: () = assert!(offset_of!(BootParams, sys_desc_table) == 0x0A0);
const _: () = assert!(offset_of!(BootParams, olpc_ofw_header) == 0x0B0);
const _: () = assert!(offset_of!(BootParams, ext_ramdisk_image) == 0x0C0);
const _: () = assert!(offset_of!(BootParams, ext_ramdisk_size) == 0x0C4);
const _: () = assert!(offset_of!(BootParams, ext_cmd_line_ptr) == 0x0C8);
const _: () = assert!(offset_of!(BootParams, _pad4) == 0x0CC);
const _: () = assert!(offset_of!(BootParams, edid_info) == 0x140);
const _: () = assert!(offset_of!(BootParams, efi_info) == 0x1C0);
const _: () = assert!(offset_of!(BootParams, alt_mem_k) == 0x1E0);
const _: () = assert!(offset_of!(BootParams, scratch) == 0x1E4);
const _: () = assert!(offset_of!(BootParams, e820_entries) == 0x1E8);
const _: () = assert!(offset_of!(BootParams, eddbuf_entries) == 0x1E9);
const _: () = assert!(offset_of!(BootParams, edd_mbr_sig_buf_entries) == 0x1EA);
const _: () = assert!(offset_of!(BootParams, kbd_status) == 0x1EB);
const _: () = assert!(offset_of!(BootParams, secure_boot) == 0x1EC);
const _: () = assert!(offset_of!(BootParams, _pad5) == 0x1ED);
const _: () = assert!(offset_of!(BootParams, sentinel) == 0x1EF);
const _: () = assert!(offset_of!(BootParams, _pad6) == 0x1F0);
const _: () = assert!(offset_of!(BootParams, hdr) == 0x1F1);
const _: () = assert!(offset_of!(BootParams, hdr) == SETUP_HEADER_OFFSET);
const _: () = assert!(offset_of!(BootParams, _pad7) == 0x26C);
const _: () = assert!(offset_of!(BootParams, edd_mbr_sig_buffer) == 0x290);
const _: () = assert!(offset_of!(BootParams, edd_mbr_sig_buffer) == SETUP_HEADER_HOLE_END);
const _: () = assert!(offset_of!(BootParams, e820_table) == 0x2D0);
const _: () = assert!(offset_of!(BootParams, _pad8) == 0xCD0);
const _: () = assert!(offset_of!(BootParams, eddbuf) == 0xD00);
const _: () = assert!(offset_of!(BootParams, _pad9) == 0xEEC);

const _: () = assert!(size_of::<BootE820Entry>() == 20);
const _: () = assert!(offset_of!(BootE820Entry, addr) == 0);
const _: () = assert!(offset_of!(BootE820Entry, size) == 8);
const _: () = assert!(offset_of!(BootE820Entry, kind) == 16);

// The setup header, field by field, at its offset in boot_params (and in the image).
const _: () = assert!(size_of::<SetupHeader>() == 0x26C - 0x1F1);
const _: () = assert!(hdr_offset!(setup_sects) == 0x1F1);
const _: () = assert!(hdr_offset!(root_flags) == 0x1F2);
const _: () = assert!(hdr_offset!(syssize) == 0x1F4);
const _: () = assert!(hdr_offset!(ram_size) == 0x1F8);
const _: () = assert!(hdr_offset!(vid_mode) == 0x1FA);
const _: () = assert!(hdr_offset!(root_dev) == 0x1FC);
const _: () = assert!(hdr_offset!(boot_flag) == 0x1FE);
const _: () = assert!(hdr_offset!(jump) == 0x200);
const _: () = assert!(hdr_offset!(header) == 0x202);
const _: () = assert!(hdr_offset!(version) == 0x206);
const _: () = assert!(hdr_offset!(realmode_swtch) == 0x208);
const _: () = assert!(hdr_offset!(start_sys_seg) == 0x20C);
const _: () = assert!(hdr_offset!(kernel_version) == 0x20E);
const _: () = assert!(hdr_offset!(type_of_loader) == 0x210);
const _: () = assert!(hdr_offset!(loadflags) == 0x211);
const _: () = assert!(hdr_offset!(setup_move_size) == 0x212);
const _: () = assert!(hdr_offset!(code32_start) == 0x214);
const _: () = assert!(hdr_offset!(ramdisk_image) == 0x218);
const _: () = assert!(hdr_offset!(ramdisk_size) == 0x21C);
const _: () = assert!(hdr_offset!(bootsect_kludge) == 0x220);
const _: () = assert!(hdr_offset!(heap_end_ptr) == 0x224);
const _: () = assert!(hdr_offset!(ext_loader_ver) == 0x226);
const _: () = assert!(hdr_offset!(ext_loader_type) == 0x227);
const _: () = assert!(hdr_offset!(cmd_line_ptr) == 0x228);
const _: () = assert!(hdr_offset!(initrd_addr_max) == 0x22C);
const _: () = assert!(hdr_offset!(kernel_alignment) == 0x230);
const _: () = assert!(hdr_offset!(relocatable_kernel) == 0x234);
const _: () = assert!(hdr_offset!(min_alignment) == 0x235);
const _: () = assert!(hdr_offset!(xloadflags) == 0x236);
const _: () = assert!(hdr_offset!(cmdline_size) == 0x238);
const _: () = assert!(hdr_offset!(hardware_subarch) == 0x23C);
const _: () = assert!(hdr_offset!(hardware_subarch_data) == 0x240);
const _: () = assert!(hdr_offset!(payload_offset) == 0x248);
const _: () = assert!(hdr_offset!(payload_length) == 0x24C);
const _: () = assert!(hdr_offset!(setup_data) == 0x250);
const _: () = assert!(hdr_offset!(pref_address) == 0x258);
const _: () = assert!(hdr_offset!(init_size) == 0x260);
const _: () = assert!(hdr_offset!(handover_offset) == 0x264);
const _: () = assert!(hdr_offset!(kernel_info_offset) == 0x268);

/// Where the jump's offset byte sits: the header ends that many bytes after the jump.
const JUMP_OFFSET_BYTE: usize = hdr_offset!(jump) + 1;
/// The jump is relative to the byte after it, which is where [`HEADER_MAGIC`] starts.
const JUMP_BASE: usize = hdr_offset!(header);
/// The shortest header parkboot accepts: protocol 2.12 ends after `handover_offset`
/// (later fields were added by 2.15).
const MIN_HEADER_END: usize = hdr_offset!(kernel_info_offset);
const _: () = assert!(JUMP_BASE == JUMP_OFFSET_BYTE + 1);

/// Shows a protocol version as "major.minor", as the boot protocol names them.
struct Protocol(u16);

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [minor, major] = self.0.to_le_bytes();
        write!(f, "{major}.{minor:02}")
    }
}

/// Shows a byte count in MiB with one decimal, rounded up (for what is needed) or down
/// (for what is available), so a message never claims a size fits when it does not.
struct Mib {
    bytes: u64,
    round_up: bool,
}

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const TENTHS: u64 = 10;
        let mut whole = self.bytes / MIB;
        let rest = self.bytes % MIB;
        // rest < 2^20, so rest * 10 cannot overflow.
        let mut tenths = if self.round_up {
            (rest * TENTHS).div_ceil(MIB)
        } else {
            rest * TENTHS / MIB
        };
        if tenths == TENTHS {
            whole += 1;
            tenths = 0;
        }
        if tenths == 0 {
            write!(f, "{whole} MiB")
        } else {
            write!(f, "{whole}.{tenths} MiB")
        }
    }
}

/// What stands in the way of a requested range, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// A reservation's name, or a description of the platform memory there.
    pub what: &'static str,
    pub start: u64,
    pub end: u64,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:#x}-{:#x}", self.what, self.start, self.end)
    }
}

/// Why a kernel cannot be loaded or booted. Each message says what the image or the
/// memory map lacks, with the numbers, so a failed entry can be fixed from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxError {
    /// The image ends before the setup header does (at `needed`).
    TooShort { len: usize, needed: usize },
    /// No 0xAA55 at 0x1FE.
    NoBootFlag { found: u16 },
    /// No "HdrS" at 0x202.
    NoHeaderMagic,
    /// Protocol older than [`MIN_PROTOCOL`].
    ProtocolTooOld { version: u16 },
    /// The jump at 0x200 says the header ends outside the range the protocol allows.
    BadHeaderLength { end: usize },
    /// `xloadflags` lacks [`XLF_KERNEL_64`].
    No64BitEntry,
    /// The setup code claims to reach the end of the file or beyond.
    NoProtectedModeKernel { setup_bytes: usize, len: usize },
    /// `syssize` is zero: the header declares no protected-mode kernel.
    ZeroSyssize,
    /// The file ends before the protected-mode kernel the header declares (`syssize`
    /// paragraphs) does: a truncated image.
    Truncated {
        /// Bytes of protected-mode kernel `syssize` declares.
        declared: u64,
        /// Bytes that follow the setup code in the file.
        present: usize,
    },
    /// The compressed payload (`payload_offset`, `payload_length`) does not lie inside
    /// the protected-mode kernel the header declares.
    PayloadOutsideKernel {
        offset: u32,
        length: u32,
        kernel: u64,
    },
    /// `init_size` is zero, so there is nothing to size the load area by.
    ZeroInitSize,
    /// `init_size` is smaller than the protected-mode kernel it must hold while the
    /// kernel decompresses itself: a corrupt header.
    InitSizeTooSmall { init_size: u32, kernel: u64 },
    /// `kernel_alignment` is zero or not a power of two.
    BadKernelAlignment { alignment: u32 },
    /// A non-relocatable kernel's address is not free.
    NotRelocatable {
        size: u64,
        address: u64,
        /// Where the address came from: "pref_address" or the bzImage default.
        source: &'static str,
        conflict: Conflict,
    },
    /// A relocatable kernel fits nowhere below [`KERNEL_SEARCH_LIMIT`].
    NoSpaceForKernel { size: u64, alignment: u64 },
    /// An initrd of zero bytes was asked to be placed.
    EmptyInitrd,
    /// No free range below `limit` holds the initrd; `largest` is the largest there.
    InitrdTooBig { size: u64, limit: u64, largest: u64 },
    /// The initrd given to [`build_boot_params`] lies beyond what the kernel can reach.
    InitrdOutOfReach { addr: u64, size: u64, limit: u64 },
    /// The command line exceeds `cmdline_size`.
    CmdlineTooLong { len: usize, max: u32 },
    /// The command line lies above 4 GiB for a kernel without
    /// [`XLF_CAN_BE_LOADED_ABOVE_4G`].
    CmdlineOutOfReach { addr: u64, len: usize },
    /// More memory ranges than boot_params has entries.
    TooManyE820Entries { count: usize },
    /// A boot_params write fell outside the page: cannot happen with the checked
    /// layout, reported rather than panicking.
    BootParamsLayout { offset: usize },
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinuxError::TooShort { len, needed } => write!(
                f,
                "not a bzImage: the image is {len:#x} bytes, but its setup header ends at {needed:#x}"
            ),
            LinuxError::NoBootFlag { found } => write!(
                f,
                "not a bzImage: boot flag at {:#x} is {found:#06x}, not {BOOT_FLAG:#06x}",
                hdr_offset!(boot_flag)
            ),
            LinuxError::NoHeaderMagic => write!(
                f,
                "not a bzImage: no 'HdrS' signature at {:#x}",
                hdr_offset!(header)
            ),
            LinuxError::ProtocolTooOld { version } => write!(
                f,
                "boot protocol {} is too old for the 64-bit entry (needs {})",
                Protocol(version),
                Protocol(MIN_PROTOCOL)
            ),
            LinuxError::BadHeaderLength { end } => write!(
                f,
                "setup header claims to end at {end:#x}; the boot protocol allows {MIN_HEADER_END:#x} to {SETUP_HEADER_HOLE_END:#x}"
            ),
            LinuxError::No64BitEntry => write!(
                f,
                "kernel does not support the 64-bit entry (XLF_KERNEL_64 not set)"
            ),
            LinuxError::NoProtectedModeKernel { setup_bytes, len } => write!(
                f,
                "setup code and boot sector take {setup_bytes:#x} bytes, but the image is only {len:#x} bytes: no protected-mode kernel"
            ),
            LinuxError::ZeroSyssize => write!(
                f,
                "setup header gives syssize 0 at {:#x}: no protected-mode kernel",
                hdr_offset!(syssize)
            ),
            LinuxError::Truncated { declared, present } => write!(
                f,
                "truncated bzImage: syssize declares a {declared:#x}-byte protected-mode kernel, but only {present:#x} bytes follow the setup code"
            ),
            LinuxError::PayloadOutsideKernel {
                offset,
                length,
                kernel,
            } => write!(
                f,
                "compressed payload at {offset:#x} ({length:#x} bytes, payload_offset/payload_length) does not lie inside the {kernel:#x}-byte protected-mode kernel"
            ),
            LinuxError::ZeroInitSize => write!(f, "kernel gives init_size 0"),
            LinuxError::InitSizeTooSmall { init_size, kernel } => write!(
                f,
                "init_size {init_size:#x} is smaller than the {kernel:#x}-byte protected-mode kernel it must hold"
            ),
            LinuxError::BadKernelAlignment { alignment } => {
                write!(f, "kernel_alignment {alignment:#x} is not a power of two")
            }
            LinuxError::NotRelocatable {
                size,
                address,
                source,
                conflict,
            } => write!(
                f,
                "kernel needs {size:#x} bytes at {address:#x} ({source}), which overlap {conflict} and it is not relocatable"
            ),
            LinuxError::NoSpaceForKernel { size, alignment } => write!(
                f,
                "no free {size:#x} bytes aligned to {alignment:#x} for the kernel between {KERNEL_SEARCH_FALLBACK_START:#x} and {KERNEL_SEARCH_LIMIT:#x}"
            ),
            LinuxError::EmptyInitrd => write!(f, "initrd is empty"),
            LinuxError::InitrdTooBig {
                size,
                limit,
                largest,
            } => {
                write!(
                    f,
                    "initrd of {} does not fit ",
                    Mib {
                        bytes: size,
                        round_up: true
                    }
                )?;
                if limit == u64::MAX {
                    write!(f, "in free memory")?;
                } else {
                    write!(f, "below {limit:#x}")?;
                }
                write!(
                    f,
                    " (largest free range {})",
                    Mib {
                        bytes: largest,
                        round_up: false
                    }
                )
            }
            LinuxError::InitrdOutOfReach { addr, size, limit } => write!(
                f,
                "initrd at {addr:#x} ({size:#x} bytes) reaches beyond {limit:#x}, the end of what this kernel accepts"
            ),
            LinuxError::CmdlineTooLong { len, max } => write!(
                f,
                "command line is {len} bytes; this kernel accepts at most {max}"
            ),
            LinuxError::CmdlineOutOfReach { addr, len } => write!(
                f,
                "command line at {addr:#x} ({len} bytes) is not below 4 GiB, and this kernel cannot read it there (XLF_CAN_BE_LOADED_ABOVE_4G not set)"
            ),
            LinuxError::TooManyE820Entries { count } => write!(
                f,
                "memory map has {count} ranges; boot_params holds at most {E820_MAX_ENTRIES}"
            ),
            LinuxError::BootParamsLayout { offset } => write!(
                f,
                "boot_params field at {offset:#x} lies outside the {BOOT_PARAMS_SIZE}-byte page"
            ),
        }
    }
}

/// The kernel's version string from its setup code, if it has a readable one. Only
/// for logs: a missing or malformed string is never an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelVersion<'a>(pub Option<&'a str>);

impl<'a> KernelVersion<'a> {
    /// What [`KernelVersion::as_str`] shows when the image has no readable string.
    pub const UNKNOWN: &'static str = "(no version string)";

    pub fn get(&self) -> Option<&'a str> {
        self.0
    }

    /// The string, or [`KernelVersion::UNKNOWN`], for logs.
    pub fn as_str(&self) -> &'a str {
        self.0.unwrap_or(Self::UNKNOWN)
    }
}

/// The first Linux release that hands CPUs woken from the ACPI mailbox back through
/// the mailbox's ResetVector (on kexec and CPU offline). Older kernels (5.19 to 6.10)
/// take the parked CPUs and keep them in their own halt loop; the kernel they kexec
/// then waits forever in `acpi_wakeup_cpu` for a CPU that no longer answers.
pub const MAILBOX_HANDBACK_RELEASE: Release = Release {
    major: 6,
    minor: 11,
};

/// A Linux release, `major.minor`, as its version string starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Release {
    /// `major.minor` from the start of a version string ("6.12.117+deb12-amd64 (...)").
    pub fn parse(text: &str) -> Option<Release> {
        let mut parts = text.splitn(3, '.');
        let major = leading_number(parts.next()?)?;
        let minor = leading_number(parts.next()?)?;
        Some(Release { major, minor })
    }
}

/// The decimal number at the start of `text` (at least one digit).
fn leading_number(text: &str) -> Option<u32> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text.get(..digits)?.parse().ok()
}

/// Whether a kernel hands woken CPUs back through the ResetVector, as far as its
/// version string tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxHandback {
    /// 6.11 or newer.
    Yes(Release),
    /// Older: its kexec successor will hang waiting for the CPUs.
    No(Release),
    /// No readable release in the version string.
    Unknown,
}

impl KernelVersion<'_> {
    /// The release at the start of the version string, if it has one.
    pub fn release(&self) -> Option<Release> {
        self.0.and_then(Release::parse)
    }

    /// Whether this kernel hands the parked CPUs back on kexec.
    pub fn mailbox_handback(&self) -> MailboxHandback {
        match self.release() {
            Some(r) if r >= MAILBOX_HANDBACK_RELEASE => MailboxHandback::Yes(r),
            Some(r) => MailboxHandback::No(r),
            None => MailboxHandback::Unknown,
        }
    }
}

impl fmt::Display for KernelVersion<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated bzImage: what placing and booting it needs, read from its setup header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel<'a> {
    /// The setup header as the image has it. Fields past the end of the image's header
    /// (newer than its protocol version) read as zero.
    pub setup: SetupHeader,
    /// Where the image's setup header ends (0x202 plus the jump's offset byte): the
    /// bytes from 0x1F1 up to here are what [`build_boot_params`] copies.
    pub setup_header_end: usize,
    /// Bytes of boot sector plus setup code, `(setup_sects + 1) * 512`: where the
    /// protected-mode kernel starts in the image.
    pub setup_bytes: usize,
    /// The protected-mode kernel's bytes in the image: what is copied to the load
    /// address.
    pub protected_mode: Range<usize>,
    /// Boot protocol version, `major << 8 | minor`.
    pub version: u16,
    /// Whether the kernel runs at any `kernel_alignment`-aligned address, not only at
    /// its preferred one.
    pub relocatable: bool,
    /// The address the kernel was linked for.
    pub pref_address: u64,
    /// Alignment of the load address (a power of two).
    pub kernel_alignment: u64,
    /// Bytes the kernel needs from its load address while it decompresses and starts.
    pub init_size: u64,
    /// Longest command line, without the terminating NUL.
    pub cmdline_size: u32,
    /// Highest byte address the initrd may occupy when the kernel cannot take one
    /// above 4 GiB.
    pub initrd_addr_max: u64,
    /// `XLF_CAN_BE_LOADED_ABOVE_4G`: the initrd (and the command line) may lie anywhere.
    pub can_load_initrd_above_4g: bool,
    /// The version string in the setup code.
    pub kernel_version: KernelVersion<'a>,
}

impl Kernel<'_> {
    /// Bytes of the protected-mode kernel in the image.
    pub fn protected_mode_len(&self) -> u64 {
        // A slice length always fits in 64 bits on the targets parkboot runs on.
        self.protected_mode.len() as u64
    }

    /// Bytes the kernel occupies from its load address until it has read the memory
    /// map: the larger of `init_size` and the image it is copied from, in whole pages.
    /// This is what [`place_kernel`] finds room for and what the caller reserves (and
    /// identity-maps).
    pub fn memory_size(&self) -> u64 {
        let bytes = self.init_size.max(self.protected_mode_len());
        // init_size is 32-bit and the image is a slice: far from overflowing.
        align_up(bytes, PAGE_SIZE).unwrap_or(bytes)
    }

    /// The address a kernel not moved elsewhere runs at, and where that address comes
    /// from: `pref_address`, or the traditional bzImage load address if it is zero.
    pub fn preferred_address(&self) -> (u64, &'static str) {
        if self.pref_address != 0 {
            (self.pref_address, "pref_address")
        } else {
            (BZIMAGE_LOAD_ADDRESS, "the default bzImage load address")
        }
    }

    /// The 64-bit entry point for a kernel loaded at `load_address`.
    pub fn entry_point(&self, load_address: u64) -> Option<u64> {
        load_address.checked_add(LINUX_64BIT_ENTRY_OFFSET)
    }
}

/// Whether `image` starts like a bzImage (boot flag and "HdrS"), without the checks of
/// [`parse`]: for telling kernel formats apart.
pub fn looks_like_bzimage(image: &[u8]) -> bool {
    u16::read_at(image, hdr_offset!(boot_flag)) == Some(BOOT_FLAG)
        && <[u8; 4]>::read_at(image, hdr_offset!(header)) == Some(HEADER_MAGIC)
}

/// Validates a bzImage for the 64-bit boot protocol and reads what loading it needs.
pub fn parse(image: &[u8]) -> Result<Kernel<'_>, LinuxError> {
    let too_short = |needed| LinuxError::TooShort {
        len: image.len(),
        needed,
    };
    // Every field up to the shortest header parkboot accepts, so the reads below can
    // only fail on a header that claims to be longer than the image.
    if image.len() < MIN_HEADER_END {
        return Err(too_short(MIN_HEADER_END));
    }
    let boot_flag = u16::read_at(image, hdr_offset!(boot_flag)).ok_or(too_short(MIN_HEADER_END))?;
    if boot_flag != BOOT_FLAG {
        return Err(LinuxError::NoBootFlag { found: boot_flag });
    }
    if <[u8; 4]>::read_at(image, hdr_offset!(header)) != Some(HEADER_MAGIC) {
        return Err(LinuxError::NoHeaderMagic);
    }
    let version = u16::read_at(image, hdr_offset!(version)).ok_or(too_short(MIN_HEADER_END))?;
    if version < MIN_PROTOCOL {
        return Err(LinuxError::ProtocolTooOld { version });
    }
    let jump_offset = *image
        .get(JUMP_OFFSET_BYTE)
        .ok_or(too_short(MIN_HEADER_END))?;
    let header_end = JUMP_BASE + usize::from(jump_offset);
    if !(MIN_HEADER_END..=SETUP_HEADER_HOLE_END).contains(&header_end) {
        return Err(LinuxError::BadHeaderLength { end: header_end });
    }
    let header_bytes = image
        .get(SETUP_HEADER_OFFSET..header_end)
        .ok_or(too_short(header_end))?;
    // Fields the image's header does not have (a shorter, older header) read as zero
    // rather than as whatever code follows the header.
    let mut padded = [0u8; SetupHeader::SIZE];
    let known = header_bytes.len().min(SetupHeader::SIZE);
    if let (Some(dst), Some(src)) = (padded.get_mut(..known), header_bytes.get(..known)) {
        dst.copy_from_slice(src);
    }
    let setup = SetupHeader::read_from(&padded).ok_or(too_short(header_end))?;

    if setup.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::No64BitEntry);
    }
    let setup_sects = match setup.setup_sects {
        0 => DEFAULT_SETUP_SECTS,
        n => n,
    };
    // At most 256 sectors: no overflow.
    let setup_bytes = (usize::from(setup_sects) + BOOT_SECTOR_COUNT) * SECTOR_SIZE;
    if setup_bytes >= image.len() {
        return Err(LinuxError::NoProtectedModeKernel {
            setup_bytes,
            len: image.len(),
        });
    }
    // Every size the header declares must hold against the file: a cut or corrupted
    // image is refused here rather than entered.
    let present = image.len() - setup_bytes;
    if setup.syssize == 0 {
        return Err(LinuxError::ZeroSyssize);
    }
    let declared = u64::from(setup.syssize) * PARAGRAPH_SIZE;
    // A signed image carries its signature after the declared kernel: more is fine.
    if declared > present as u64 {
        return Err(LinuxError::Truncated { declared, present });
    }
    let payload_end = u64::from(setup.payload_offset) + u64::from(setup.payload_length);
    if payload_end > declared {
        return Err(LinuxError::PayloadOutsideKernel {
            offset: setup.payload_offset,
            length: setup.payload_length,
            kernel: declared,
        });
    }
    if setup.init_size == 0 {
        return Err(LinuxError::ZeroInitSize);
    }
    if u64::from(setup.init_size) < declared {
        return Err(LinuxError::InitSizeTooSmall {
            init_size: setup.init_size,
            kernel: declared,
        });
    }
    let alignment = setup.kernel_alignment;
    if !alignment.is_power_of_two() {
        return Err(LinuxError::BadKernelAlignment { alignment });
    }

    Ok(Kernel {
        setup,
        setup_header_end: header_end,
        setup_bytes,
        protected_mode: setup_bytes..image.len(),
        version,
        relocatable: setup.relocatable_kernel != 0,
        pref_address: setup.pref_address,
        kernel_alignment: u64::from(alignment),
        init_size: u64::from(setup.init_size),
        cmdline_size: setup.cmdline_size,
        initrd_addr_max: u64::from(setup.initrd_addr_max),
        can_load_initrd_above_4g: setup.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0,
        kernel_version: KernelVersion(version_string(image, setup.kernel_version, setup_bytes)),
    })
}

/// The NUL-terminated version string `kernel_version` points to, if it lies inside the
/// setup code and is UTF-8.
fn version_string(image: &[u8], pointer: u16, setup_bytes: usize) -> Option<&str> {
    if pointer == 0 {
        return None;
    }
    let start = usize::from(pointer).checked_add(KERNEL_VERSION_BASE)?;
    let area = image.get(start..setup_bytes)?;
    let len = area.iter().position(|&b| b == 0)?;
    let text = core::str::from_utf8(area.get(..len)?).ok()?;
    (!text.is_empty()).then_some(text)
}

/// Where the command line, the initrd, the RSDP and the memory map are, for
/// [`build_boot_params`].
#[derive(Clone, Copy, Debug)]
pub struct BootArgs<'a> {
    /// Physical address of the NUL-terminated command line.
    pub cmdline_addr: u64,
    /// Its length without the NUL.
    pub cmdline_len: usize,
    /// `(address, size)` of the loaded initrd.
    pub initrd: Option<(u64, u64)>,
    /// Physical address of the ACPI RSDP to use, or 0 to let the kernel search.
    pub rsdp: u64,
    /// The memory map, `(addr, size, e820 type)`, at most [`E820_MAX_ENTRIES`].
    pub e820: &'a [(u64, u64, u32)],
}

/// The low and high halves of a 64-bit value, for fields split between the setup
/// header (low) and the `ext_*` fields of boot_params (high).
fn split(value: u64) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = value.to_le_bytes();
    (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// Writes `value` at `offset` in the boot_params page.
fn put<T: WireField>(
    out: &mut [u8; BOOT_PARAMS_SIZE],
    offset: usize,
    value: T,
) -> Result<(), LinuxError> {
    value
        .write_at(out, offset)
        .ok_or(LinuxError::BootParamsLayout { offset })
}

/// Fills `out` with the boot_params page for `kernel`, parsed from `image`: a zeroed
/// page, the image's setup header copied to 0x1F1 (up to the end its jump gives, as the
/// protocol asks), then what parkboot passes. Everything is checked before `out` is
/// touched. `code32_start` keeps the image's value (the 64-bit entry does not use it);
/// `vid_mode` too, since only the skipped real-mode code reads it.
pub fn build_boot_params(
    kernel: &Kernel,
    image: &[u8],
    out: &mut [u8; BOOT_PARAMS_SIZE],
    args: &BootArgs,
) -> Result<(), LinuxError> {
    let header = image
        .get(SETUP_HEADER_OFFSET..kernel.setup_header_end)
        .ok_or(LinuxError::TooShort {
            len: image.len(),
            needed: kernel.setup_header_end,
        })?;
    if args.cmdline_len > kernel.cmdline_size as usize {
        return Err(LinuxError::CmdlineTooLong {
            len: args.cmdline_len,
            max: kernel.cmdline_size,
        });
    }
    // The terminating NUL must be reachable too.
    let cmdline_end = u64::try_from(args.cmdline_len)
        .ok()
        .and_then(|len| args.cmdline_addr.checked_add(len)?.checked_add(1));
    if !kernel.can_load_initrd_above_4g && cmdline_end.is_none_or(|end| end > FOUR_GIB) {
        return Err(LinuxError::CmdlineOutOfReach {
            addr: args.cmdline_addr,
            len: args.cmdline_len,
        });
    }
    if let Some((addr, size)) = args.initrd {
        let limit = initrd_limit(kernel);
        if addr.checked_add(size).is_none_or(|end| end > limit) {
            return Err(LinuxError::InitrdOutOfReach { addr, size, limit });
        }
    }
    if args.e820.len() > E820_MAX_ENTRIES {
        return Err(LinuxError::TooManyE820Entries {
            count: args.e820.len(),
        });
    }

    out.fill(0);
    let dst = out
        .get_mut(SETUP_HEADER_OFFSET..kernel.setup_header_end)
        .ok_or(LinuxError::BootParamsLayout {
            offset: kernel.setup_header_end,
        })?;
    dst.copy_from_slice(header);

    put(out, hdr_offset!(type_of_loader), TYPE_OF_LOADER_UNDEFINED)?;
    let loadflags = (kernel.setup.loadflags | LOADED_HIGH) & !CAN_USE_HEAP;
    put(out, hdr_offset!(loadflags), loadflags)?;
    // parkboot passes no setup_data list; a stray value would be followed as a pointer.
    put(out, hdr_offset!(setup_data), 0u64)?;

    let (cmdline_lo, cmdline_hi) = split(args.cmdline_addr);
    put(out, hdr_offset!(cmd_line_ptr), cmdline_lo)?;
    put(out, offset_of!(BootParams, ext_cmd_line_ptr), cmdline_hi)?;

    if let Some((addr, size)) = args.initrd {
        let (image_lo, image_hi) = split(addr);
        let (size_lo, size_hi) = split(size);
        put(out, hdr_offset!(ramdisk_image), image_lo)?;
        put(out, hdr_offset!(ramdisk_size), size_lo)?;
        put(out, offset_of!(BootParams, ext_ramdisk_image), image_hi)?;
        put(out, offset_of!(BootParams, ext_ramdisk_size), size_hi)?;
    } else {
        put(out, hdr_offset!(ramdisk_image), 0u32)?;
        put(out, hdr_offset!(ramdisk_size), 0u32)?;
    }

    put(out, offset_of!(BootParams, acpi_rsdp_addr), args.rsdp)?;

    // At most E820_MAX_ENTRIES (128), checked above.
    let entries = u8::try_from(args.e820.len()).map_err(|_| LinuxError::TooManyE820Entries {
        count: args.e820.len(),
    })?;
    put(out, offset_of!(BootParams, e820_entries), entries)?;
    for (index, &(addr, size, kind)) in args.e820.iter().enumerate() {
        let offset = offset_of!(BootParams, e820_table) + index * BootE820Entry::SIZE;
        BootE820Entry { addr, size, kind }
            .write_at(out, offset)
            .ok_or(LinuxError::BootParamsLayout { offset })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
