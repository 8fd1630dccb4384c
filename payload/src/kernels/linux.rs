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

use crate::memory::{align_down, align_up, MemoryMap, ReportAs, FOUR_GIB, MIB, PAGE_SIZE};
use crate::platform::MemoryKind;

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

/// A little-endian integer at a fixed offset in a boot-protocol structure. Fields are
/// read and written one at a time at their `offset_of!` positions, so untrusted bytes
/// are never reinterpreted in place and no unsafe code is needed.
trait LeField: Sized + Copy {
    fn read_at(bytes: &[u8], at: usize) -> Option<Self>;
    fn write_at(self, out: &mut [u8], at: usize) -> Option<()>;
}

fn le_bytes<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn put_le_bytes<const N: usize>(out: &mut [u8], at: usize, value: [u8; N]) -> Option<()> {
    out.get_mut(at..at.checked_add(N)?)?.copy_from_slice(&value);
    Some(())
}

macro_rules! le_field {
    ($($ty:ty),*) => {
        $(
            impl LeField for $ty {
                fn read_at(bytes: &[u8], at: usize) -> Option<Self> {
                    le_bytes(bytes, at).map(<$ty>::from_le_bytes)
                }
                fn write_at(self, out: &mut [u8], at: usize) -> Option<()> {
                    put_le_bytes(out, at, self.to_le_bytes())
                }
            }
        )*
    };
}

le_field!(u8, u16, u32, u64);

/// Declares the packed setup header together with `read_from`, which reads each field
/// at its `offset_of!` position, so the Rust layout (checked by the assertions below)
/// is the one place offsets come from.
macro_rules! setup_header {
    (
        $(#[$meta:meta])*
        pub struct SetupHeader {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C, packed)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct SetupHeader {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl SetupHeader {
            /// Size of the header as parkboot knows it (through protocol 2.15).
            pub const SIZE: usize = size_of::<SetupHeader>();

            /// The header at the start of `bytes` (which start at image offset 0x1F1),
            /// or `None` when `bytes` is shorter than [`SetupHeader::SIZE`].
            pub fn read_from(bytes: &[u8]) -> Option<Self> {
                Some(SetupHeader {
                    $( $field: <$ty as LeField>::read_at(
                        bytes,
                        offset_of!(SetupHeader, $field),
                    )?, )*
                })
            }
        }
    };
}

setup_header! {
    /// `struct setup_header`: the part of a bzImage's real-mode header a boot loader
    /// reads and fills in, at 0x1F1 both in the image and in boot_params.
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

impl LeField for [u8; 4] {
    fn read_at(bytes: &[u8], at: usize) -> Option<Self> {
        le_bytes(bytes, at)
    }
    fn write_at(self, out: &mut [u8], at: usize) -> Option<()> {
        put_le_bytes(out, at, self)
    }
}

/// `struct boot_e820_entry`: one memory range in boot_params.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootE820Entry {
    pub addr: u64,
    pub size: u64,
    /// e820 type: 1 usable, 2 reserved, 3 ACPI reclaimable, 4 ACPI NVS, ...
    pub kind: u32,
}

impl BootE820Entry {
    pub const SIZE: usize = size_of::<BootE820Entry>();

    /// Writes the entry at `at` in `out`; `None` when it does not fit.
    fn write_at(&self, out: &mut [u8], at: usize) -> Option<()> {
        let (addr, size, kind) = (self.addr, self.size, self.kind);
        addr.write_at(out, at.checked_add(offset_of!(BootE820Entry, addr))?)?;
        size.write_at(out, at.checked_add(offset_of!(BootE820Entry, size))?)?;
        kind.write_at(out, at.checked_add(offset_of!(BootE820Entry, kind))?)
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

/// Calls `visit(lo, hi)` for each free extent of `memory` (usable RAM outside every
/// reservation), in ascending order. Read-only, so placing a kernel does not commit
/// parkboot to anything until the caller reserves.
fn for_each_free(memory: &MemoryMap, mut visit: impl FnMut(u64, u64)) {
    for region in memory.platform_regions() {
        if !region.kind.is_usable() {
            continue;
        }
        let end = region.end();
        let mut lo = region.start;
        // Reservations are sorted by start and disjoint.
        for r in memory.reservations() {
            if r.end() <= lo || r.start >= end {
                continue;
            }
            if r.start > lo {
                visit(lo, r.start);
            }
            lo = lo.max(r.end());
        }
        if lo < end {
            visit(lo, end);
        }
    }
}

/// The lowest `align`-aligned start of a free `size`-byte range inside `[min, max)`.
fn lowest_fit(memory: &MemoryMap, size: u64, align: u64, min: u64, max: u64) -> Option<u64> {
    let mut found = None;
    for_each_free(memory, |lo, hi| {
        if found.is_some() {
            return;
        }
        let (lo, hi) = (lo.max(min), hi.min(max));
        let Some(start) = align_up(lo, align) else {
            return;
        };
        if start.checked_add(size).is_some_and(|end| end <= hi) && memory.is_free(start, size) {
            found = Some(start);
        }
    });
    found
}

/// The highest `align`-aligned start of a free `size`-byte range inside `[min, max)`.
fn highest_fit(memory: &MemoryMap, size: u64, align: u64, min: u64, max: u64) -> Option<u64> {
    let mut found: Option<u64> = None;
    for_each_free(memory, |lo, hi| {
        let (lo, hi) = (lo.max(min), hi.min(max));
        let Some(top) = hi.checked_sub(size) else {
            return;
        };
        let start = align_down(top, align);
        if start >= lo && memory.is_free(start, size) && found.is_none_or(|f| start > f) {
            found = Some(start);
        }
    });
    found
}

/// The size of the largest free page-aligned extent inside `[min, max)`.
fn largest_free(memory: &MemoryMap, min: u64, max: u64) -> u64 {
    let mut largest = 0;
    for_each_free(memory, |lo, hi| {
        let Some(lo) = align_up(lo.max(min), PAGE_SIZE) else {
            return;
        };
        let hi = align_down(hi.min(max), PAGE_SIZE);
        if hi > lo {
            largest = largest.max(hi - lo);
        }
    });
    largest
}

/// How a platform range that is not usable RAM is named in messages.
fn platform_kind_name(kind: MemoryKind) -> &'static str {
    match kind {
        MemoryKind::Usable => "usable RAM",
        MemoryKind::Reserved => "firmware-reserved memory",
        MemoryKind::AcpiReclaim => "ACPI tables",
        MemoryKind::AcpiNvs => "ACPI NVS memory",
        MemoryKind::Unusable => "unusable RAM",
        MemoryKind::CorebootTables => "coreboot tables",
        MemoryKind::Other(_) => "memory of an unknown type",
    }
}

/// The lowest thing in `[start, start + size)` that keeps the range from being free: a
/// reservation, a platform range that is not usable RAM, or a hole in the map.
fn find_conflict(memory: &MemoryMap, start: u64, size: u64) -> Conflict {
    let Some(end) = start.checked_add(size) else {
        return Conflict {
            what: "the end of the address space",
            start,
            end: u64::MAX,
        };
    };
    let mut lowest: Option<Conflict> = None;
    let mut consider = |c: Conflict| {
        if lowest.is_none_or(|l| c.start.max(start) < l.start.max(start)) {
            lowest = Some(c);
        }
    };
    for r in memory.reservations() {
        if r.start < end && start < r.end() {
            consider(Conflict {
                what: r.name,
                start: r.start,
                end: r.end(),
            });
        }
    }
    let mut cursor = start;
    for region in memory.platform_regions() {
        if region.end() <= cursor {
            continue;
        }
        if region.start >= end {
            break;
        }
        if region.start > cursor {
            consider(Conflict {
                what: "a hole in the memory map",
                start: cursor,
                end: region.start,
            });
        }
        if !region.kind.is_usable() {
            consider(Conflict {
                what: platform_kind_name(region.kind),
                start: region.start,
                end: region.end(),
            });
        }
        cursor = region.end();
    }
    if cursor < end {
        consider(Conflict {
            what: "a hole in the memory map",
            start: cursor,
            end,
        });
    }
    lowest.unwrap_or(Conflict {
        what: "memory parkboot cannot use",
        start,
        end,
    })
}

/// Chooses the kernel's load address: its preferred address if that range is free,
/// else (relocatable kernels only) the lowest free `kernel_alignment`-aligned address
/// at or above [`KERNEL_SEARCH_START`], else at or above
/// [`KERNEL_SEARCH_FALLBACK_START`], always below [`KERNEL_SEARCH_LIMIT`]. The lowest
/// fit leaves high memory to the initrd, which [`place_initrd`] puts as high as it can.
/// The map is not changed: the caller reserves [`Kernel::memory_size`] bytes there.
pub fn place_kernel(kernel: &Kernel, memory: &MemoryMap) -> Result<u64, LinuxError> {
    let size = kernel.memory_size();
    let (preferred, source) = kernel.preferred_address();
    // A relocatable kernel realigns itself upwards from an unaligned load address, so
    // its preferred address only counts if aligned; and relocated or not, it is kept
    // below the search limit.
    let preferred_usable = !kernel.relocatable
        || (preferred.is_multiple_of(kernel.kernel_alignment)
            && preferred
                .checked_add(size)
                .is_some_and(|end| end <= KERNEL_SEARCH_LIMIT));
    if preferred_usable && memory.is_free(preferred, size) {
        return Ok(preferred);
    }
    if !kernel.relocatable {
        return Err(LinuxError::NotRelocatable {
            size,
            address: preferred,
            source,
            conflict: find_conflict(memory, preferred, size),
        });
    }
    let alignment = kernel.kernel_alignment.max(PAGE_SIZE);
    lowest_fit(
        memory,
        size,
        alignment,
        KERNEL_SEARCH_START,
        KERNEL_SEARCH_LIMIT,
    )
    .or_else(|| {
        lowest_fit(
            memory,
            size,
            alignment,
            KERNEL_SEARCH_FALLBACK_START,
            KERNEL_SEARCH_LIMIT,
        )
    })
    .ok_or(LinuxError::NoSpaceForKernel { size, alignment })
}

/// The end (exclusive) of the memory an initrd may occupy for `kernel`.
fn initrd_limit(kernel: &Kernel) -> u64 {
    if kernel.can_load_initrd_above_4g {
        u64::MAX
    } else {
        kernel.initrd_addr_max.saturating_add(1)
    }
}

/// Chooses the initrd's address: the highest page-aligned free range of `size` bytes
/// at or above [`INITRD_SEARCH_START`] that ends at or below `initrd_addr_max + 1`, or
/// anywhere in memory if the kernel has [`XLF_CAN_BE_LOADED_ABOVE_4G`]. High, so that
/// it stays out of the way of the kernel, which decompresses and relocates itself
/// upwards from its load address. Reserve the kernel first: the map is read, not
/// changed, and the caller reserves `size` bytes (rounded up to pages) at the result.
pub fn place_initrd(kernel: &Kernel, size: u64, memory: &MemoryMap) -> Result<u64, LinuxError> {
    if size == 0 {
        return Err(LinuxError::EmptyInitrd);
    }
    let limit = initrd_limit(kernel);
    let too_big = || LinuxError::InitrdTooBig {
        size,
        limit,
        largest: largest_free(memory, INITRD_SEARCH_START, limit),
    };
    let rounded = align_up(size, PAGE_SIZE).ok_or_else(too_big)?;
    highest_fit(memory, rounded, PAGE_SIZE, INITRD_SEARCH_START, limit).ok_or_else(too_big)
}

/// Converts the map a kernel is shown ([`MemoryMap::kernel_view`]) into e820 entries
/// `(addr, size, type)` in `out`, returning how many there are.
pub fn e820_from_kernel_view(
    view: impl Iterator<Item = (u64, u64, ReportAs)>,
    out: &mut [(u64, u64, u32)],
) -> Result<usize, LinuxError> {
    let capacity = out.len();
    let mut view = view;
    let mut count = 0;
    for (start, size, report_as) in view.by_ref() {
        let Some(slot) = out.get_mut(count) else {
            // Count the rest so the message tells how far over the map is.
            let count = capacity.saturating_add(1).saturating_add(view.count());
            return Err(LinuxError::TooManyE820Entries { count });
        };
        *slot = (start, size, report_as.e820_type());
        count += 1;
    }
    Ok(count)
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
fn put<T: LeField>(
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
mod tests {
    use super::*;
    use crate::memory::{Lifetime, GIB};
    use crate::platform::MemoryRegion;
    use std::path::PathBuf;

    // Offsets below are written as numbers on purpose: they are the boot protocol's
    // tables, checked independently of the structures above.

    fn w8(image: &mut [u8], at: usize, v: u8) {
        image[at] = v;
    }
    fn w16(image: &mut [u8], at: usize, v: u16) {
        image[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn w32(image: &mut [u8], at: usize, v: u32) {
        image[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn w64(image: &mut [u8], at: usize, v: u64) {
        image[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn r8(page: &[u8], at: usize) -> u8 {
        page[at]
    }
    fn r16(page: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(page[at..at + 2].try_into().unwrap())
    }
    fn r32(page: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(page[at..at + 4].try_into().unwrap())
    }
    fn r64(page: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(page[at..at + 8].try_into().unwrap())
    }

    /// A synthetic bzImage: a boot sector and setup code holding a setup header, then
    /// a protected-mode part filled with a pattern.
    #[derive(Clone)]
    struct TestImage {
        setup_sects: u8,
        version: u16,
        xloadflags: u16,
        loadflags: u8,
        relocatable: u8,
        pref_address: u64,
        kernel_alignment: u32,
        init_size: u32,
        cmdline_size: u32,
        initrd_addr_max: u32,
        /// The jump's offset byte: the header ends at 0x202 plus this.
        jump_offset: u8,
        protected_mode_len: usize,
        version_string: Option<&'static [u8]>,
        version_pointer: u16,
        /// `syssize`; `None` declares exactly the protected-mode part built.
        syssize: Option<u32>,
        payload_offset: u32,
        payload_length: u32,
    }

    impl Default for TestImage {
        fn default() -> Self {
            TestImage {
                setup_sects: 4,
                version: 0x020F,
                xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
                loadflags: 0x81,
                relocatable: 1,
                pref_address: 0x100_0000,
                kernel_alignment: 0x20_0000,
                init_size: 0x240_0000,
                cmdline_size: 2047,
                initrd_addr_max: 0x7fff_ffff,
                jump_offset: 0x6a,
                protected_mode_len: 0x3000,
                version_string: Some(b"6.12.0-test (parkboot@test) #1 SMP"),
                version_pointer: 0x300,
                syssize: None,
                payload_offset: 0x2cc,
                payload_length: 0x2000,
            }
        }
    }

    impl TestImage {
        fn setup_bytes(&self) -> usize {
            let sects = if self.setup_sects == 0 {
                4
            } else {
                self.setup_sects as usize
            };
            (sects + 1) * 512
        }

        fn build(&self) -> Vec<u8> {
            let setup_bytes = self.setup_bytes();
            let mut image = vec![0u8; setup_bytes + self.protected_mode_len];
            // Garbage where boot_params keeps its own fields, which a loader must not
            // copy: the sentinel, and code after the header.
            w8(&mut image, 0x1ef, 0xff);
            for b in &mut image[0x26c..0x290] {
                *b = 0xcc;
            }
            w8(&mut image, 0x1f1, self.setup_sects);
            let syssize = self
                .syssize
                .unwrap_or((self.protected_mode_len / 16) as u32);
            w32(&mut image, 0x1f4, syssize);
            w32(&mut image, 0x248, self.payload_offset);
            w32(&mut image, 0x24c, self.payload_length);
            w16(&mut image, 0x1fa, 0xffff);
            w16(&mut image, 0x1fe, 0xaa55);
            w8(&mut image, 0x200, 0xeb);
            w8(&mut image, 0x201, self.jump_offset);
            image[0x202..0x206].copy_from_slice(b"HdrS");
            w16(&mut image, 0x206, self.version);
            w16(&mut image, 0x20e, self.version_pointer);
            w8(&mut image, 0x211, self.loadflags);
            w32(&mut image, 0x214, 0x10_0000);
            w32(&mut image, 0x22c, self.initrd_addr_max);
            w32(&mut image, 0x230, self.kernel_alignment);
            w8(&mut image, 0x234, self.relocatable);
            w8(&mut image, 0x235, 21);
            w16(&mut image, 0x236, self.xloadflags);
            w32(&mut image, 0x238, self.cmdline_size);
            w64(&mut image, 0x258, self.pref_address);
            w32(&mut image, 0x260, self.init_size);
            w32(&mut image, 0x264, 0x190);
            if self.jump_offset >= 0x6a {
                w32(&mut image, 0x268, 0x12_3400);
            }
            if let Some(s) = self.version_string {
                let at = self.version_pointer as usize + 0x200;
                image[at..at + s.len()].copy_from_slice(s);
                image[at + s.len()] = 0;
            }
            for (i, b) in image[setup_bytes..].iter_mut().enumerate() {
                *b = (i % 251) as u8 | 1;
            }
            image
        }
    }

    fn image() -> Vec<u8> {
        TestImage::default().build()
    }

    fn region(start: u64, size: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion { start, size, kind }
    }

    fn ram(start: u64, size: u64) -> MemoryRegion {
        region(start, size, MemoryKind::Usable)
    }

    /// A PC-like map: low RAM, the BIOS area, RAM from 1 MiB to 2 GiB, ACPI tables,
    /// firmware-reserved memory, and 4 GiB of RAM above 4 GiB.
    fn pc_map() -> MemoryMap {
        MemoryMap::new(&[
            ram(0, 0x9fc00),
            region(0xf0000, 0x10000, MemoryKind::Reserved),
            ram(MIB, 2 * GIB - MIB),
            region(2 * GIB, MIB, MemoryKind::AcpiReclaim),
            region(2 * GIB + MIB, MIB, MemoryKind::Reserved),
            ram(FOUR_GIB, FOUR_GIB),
        ])
        .unwrap()
    }

    fn reserve(map: &mut MemoryMap, start: u64, size: u64, name: &'static str) {
        map.reserve(start, size, name, ReportAs::Reserved, Lifetime::Boot)
            .unwrap();
    }

    #[test]
    fn parses_a_synthetic_bzimage() {
        let bytes = image();
        let k = parse(&bytes).unwrap();
        assert_eq!(k.version, 0x020F);
        assert_eq!(k.setup_bytes, 5 * 512);
        assert_eq!(k.setup_header_end, 0x26c);
        assert_eq!(k.protected_mode, 0xa00..0xa00 + 0x3000);
        assert_eq!(k.protected_mode_len(), 0x3000);
        assert!(k.relocatable);
        assert_eq!(k.pref_address, 0x100_0000);
        assert_eq!(k.kernel_alignment, 0x20_0000);
        assert_eq!(k.init_size, 0x240_0000);
        assert_eq!(k.cmdline_size, 2047);
        assert_eq!(k.initrd_addr_max, 0x7fff_ffff);
        assert!(k.can_load_initrd_above_4g);
        assert_eq!(
            k.kernel_version.get(),
            Some("6.12.0-test (parkboot@test) #1 SMP")
        );
        assert_eq!(
            k.kernel_version.as_str(),
            "6.12.0-test (parkboot@test) #1 SMP"
        );
        // The copied header has every field at its place.
        let setup = k.setup;
        assert_eq!({ setup.boot_flag }, BOOT_FLAG);
        assert_eq!({ setup.header }, HEADER_MAGIC);
        assert_eq!({ setup.syssize }, 0x300);
        assert_eq!({ setup.vid_mode }, 0xffff);
        assert_eq!({ setup.code32_start }, 0x10_0000);
        assert_eq!({ setup.min_alignment }, 21);
        assert_eq!({ setup.handover_offset }, 0x190);
        assert_eq!({ setup.kernel_info_offset }, 0x12_3400);
        assert_eq!(k.memory_size(), 0x240_0000);
        assert_eq!(k.entry_point(0x100_0000), Some(0x100_0200));
        assert_eq!(k.entry_point(u64::MAX), None);
        assert!(looks_like_bzimage(&bytes));
    }

    #[test]
    fn setup_sects_zero_means_four() {
        let zero = TestImage {
            setup_sects: 0,
            ..TestImage::default()
        };
        let bytes = zero.build();
        let k = parse(&bytes).unwrap();
        assert_eq!(k.setup_bytes, (4 + 1) * 512);
        let fifteen = TestImage {
            setup_sects: 15,
            ..TestImage::default()
        };
        let bytes = fifteen.build();
        let k = parse(&bytes).unwrap();
        assert_eq!(k.setup_bytes, 16 * 512);
        assert_eq!(k.protected_mode.start, 0x2000);
    }

    #[test]
    fn memory_size_covers_the_larger_of_image_and_init_size() {
        // init_size covers the declared kernel, but the file carries more after it (a
        // signature): the copy of the whole file must fit too.
        let t = TestImage {
            init_size: 0x1000,
            protected_mode_len: 0x2345,
            syssize: Some(0x80),
            payload_length: 0x400,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        assert_eq!(k.memory_size(), 0x3000);
    }

    #[test]
    fn rejects_what_is_not_a_bzimage() {
        assert_eq!(
            parse(&[]),
            Err(LinuxError::TooShort {
                len: 0,
                needed: 0x268
            })
        );
        assert!(!looks_like_bzimage(&[]));
        let err = parse(&[0u8; 100]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a bzImage: the image is 0x64 bytes, but its setup header ends at 0x268"
        );

        let mut bytes = image();
        w16(&mut bytes, 0x1fe, 0x1234);
        let err = parse(&bytes).unwrap_err();
        assert_eq!(err, LinuxError::NoBootFlag { found: 0x1234 });
        assert_eq!(
            err.to_string(),
            "not a bzImage: boot flag at 0x1fe is 0x1234, not 0xaa55"
        );
        assert!(!looks_like_bzimage(&bytes));

        let mut bytes = image();
        bytes[0x202..0x206].copy_from_slice(b"HdrX");
        let err = parse(&bytes).unwrap_err();
        assert_eq!(err, LinuxError::NoHeaderMagic);
        assert_eq!(
            err.to_string(),
            "not a bzImage: no 'HdrS' signature at 0x202"
        );
        assert!(!looks_like_bzimage(&bytes));

        // An ELF file is not mistaken for one.
        let mut elf = vec![0u8; 0x1000];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert!(!looks_like_bzimage(&elf));
        assert!(parse(&elf).is_err());
    }

    #[test]
    fn protocol_version_must_be_2_12() {
        for (version, ok) in [
            (0x0200, false),
            (0x020A, false),
            (0x020B, false),
            (0x020C, true),
            (0x020F, true),
        ] {
            let t = TestImage {
                version,
                ..TestImage::default()
            };
            assert_eq!(parse(&t.build()).is_ok(), ok, "version {version:#x}");
        }
        let t = TestImage {
            version: 0x020A,
            ..TestImage::default()
        };
        let err = parse(&t.build()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "boot protocol 2.10 is too old for the 64-bit entry (needs 2.12)"
        );
    }

    #[test]
    fn needs_the_64_bit_entry() {
        let t = TestImage {
            xloadflags: XLF_CAN_BE_LOADED_ABOVE_4G | XLF_EFI_HANDOVER_64,
            ..TestImage::default()
        };
        let err = parse(&t.build()).unwrap_err();
        assert_eq!(err, LinuxError::No64BitEntry);
        assert_eq!(
            err.to_string(),
            "kernel does not support the 64-bit entry (XLF_KERNEL_64 not set)"
        );
        // Without the above-4G flag the kernel still loads, with the initrd kept low.
        let t = TestImage {
            xloadflags: XLF_KERNEL_64,
            ..TestImage::default()
        };
        assert!(!parse(&t.build()).unwrap().can_load_initrd_above_4g);
    }

    #[test]
    fn protected_mode_kernel_must_be_in_the_file() {
        let bytes = image();
        // Cut right where the protected-mode kernel would start.
        let err = parse(&bytes[..0xa00]).unwrap_err();
        assert_eq!(
            err,
            LinuxError::NoProtectedModeKernel {
                setup_bytes: 0xa00,
                len: 0xa00
            }
        );
        // Setup code claiming 255 sectors in a small file.
        let mut bytes = image();
        w8(&mut bytes, 0x1f1, 255);
        assert_eq!(
            parse(&bytes),
            Err(LinuxError::NoProtectedModeKernel {
                setup_bytes: 256 * 512,
                len: bytes.len()
            })
        );
    }

    #[test]
    fn a_truncated_image_is_refused_by_name() {
        let bytes = image();
        // One byte short of what syssize declares, and cut in half.
        for cut in [bytes.len() - 1, 0xa00 + 0x1800, 0xa01] {
            let err = parse(&bytes[..cut]).unwrap_err();
            assert_eq!(
                err,
                LinuxError::Truncated {
                    declared: 0x3000,
                    present: cut - 0xa00
                }
            );
            assert!(err.to_string().starts_with("truncated bzImage"), "{err}");
        }
        // Bytes after the declared kernel (a signature) are fine.
        let mut signed = image();
        signed.extend_from_slice(&[0x5a; 0x5c0]);
        let k = parse(&signed).unwrap();
        assert_eq!(k.protected_mode, 0xa00..signed.len());
        // syssize larger than the file, as a corrupted header would say.
        let t = TestImage {
            syssize: Some(0x0bc_0000),
            ..TestImage::default()
        };
        assert_eq!(
            parse(&t.build()).unwrap_err().to_string(),
            "truncated bzImage: syssize declares a 0xbc00000-byte protected-mode kernel, but only 0x3000 bytes follow the setup code"
        );
        let t = TestImage {
            syssize: Some(0),
            ..TestImage::default()
        };
        assert_eq!(parse(&t.build()), Err(LinuxError::ZeroSyssize));
    }

    /// A header shaped like Debian's 6.12 kernel (40 sectors of setup, a signature
    /// after the declared kernel) cut to 1 MB: refused by name, never entered.
    #[test]
    fn a_real_shaped_kernel_cut_to_one_megabyte_is_refused() {
        let t = TestImage {
            setup_sects: 39,
            protected_mode_len: 0xb8_1000,
            syssize: Some(0xb8_0a00 / 16),
            payload_offset: 0x2cc,
            payload_length: 0xb4_a230,
            init_size: 0x37e_e000,
            ..TestImage::default()
        };
        let bytes = t.build();
        assert!(parse(&bytes).is_ok());
        let err = parse(&bytes[..1_000_000]).unwrap_err();
        assert_eq!(
            err,
            LinuxError::Truncated {
                declared: 0xb8_0a00,
                present: 1_000_000 - 40 * 512
            }
        );
    }

    #[test]
    fn payload_and_init_size_must_fit_the_declared_kernel() {
        // The payload ends exactly at the declared end: fine; one byte more is not.
        let t = TestImage {
            payload_offset: 0x1000,
            payload_length: 0x2000,
            ..TestImage::default()
        };
        assert!(parse(&t.build()).is_ok());
        for (offset, length) in [(0x1000, 0x2001), (0x3001, 0), (u32::MAX, u32::MAX)] {
            let t = TestImage {
                payload_offset: offset,
                payload_length: length,
                ..TestImage::default()
            };
            let err = parse(&t.build()).unwrap_err();
            assert_eq!(
                err,
                LinuxError::PayloadOutsideKernel {
                    offset,
                    length,
                    kernel: 0x3000
                }
            );
            assert!(err.to_string().contains("payload_offset"), "{err}");
        }
        let t = TestImage {
            init_size: 0x2fff,
            ..TestImage::default()
        };
        assert_eq!(
            parse(&t.build()),
            Err(LinuxError::InitSizeTooSmall {
                init_size: 0x2fff,
                kernel: 0x3000
            })
        );
        let t = TestImage {
            init_size: 0x3000,
            ..TestImage::default()
        };
        assert!(parse(&t.build()).is_ok());
    }

    #[test]
    fn init_size_and_alignment_are_checked() {
        let t = TestImage {
            init_size: 0,
            ..TestImage::default()
        };
        assert_eq!(parse(&t.build()), Err(LinuxError::ZeroInitSize));
        for alignment in [0, 3, 0x30_0000] {
            let t = TestImage {
                kernel_alignment: alignment,
                ..TestImage::default()
            };
            let err = parse(&t.build()).unwrap_err();
            assert_eq!(err, LinuxError::BadKernelAlignment { alignment });
        }
        let t = TestImage {
            kernel_alignment: 0x30_0000,
            ..TestImage::default()
        };
        assert_eq!(
            parse(&t.build()).unwrap_err().to_string(),
            "kernel_alignment 0x300000 is not a power of two"
        );
    }

    #[test]
    fn header_length_comes_from_the_jump() {
        // A protocol 2.12 header ends after handover_offset: what follows is code and
        // must not be read as kernel_info_offset.
        let t = TestImage {
            version: 0x020C,
            jump_offset: 0x66,
            ..TestImage::default()
        };
        let mut bytes = t.build();
        w32(&mut bytes, 0x268, 0xdead_beef);
        let k = parse(&bytes).unwrap();
        assert_eq!(k.setup_header_end, 0x268);
        assert_eq!({ k.setup.kernel_info_offset }, 0);
        assert_eq!({ k.setup.handover_offset }, 0x190);
        // Too short to hold the fields protocol 2.12 defines, or longer than the room
        // boot_params has for it.
        for jump_offset in [0x00, 0x60, 0x65, 0x8f, 0xff] {
            let t = TestImage {
                jump_offset,
                ..TestImage::default()
            };
            assert_eq!(
                parse(&t.build()),
                Err(LinuxError::BadHeaderLength {
                    end: 0x202 + jump_offset as usize
                }),
                "jump offset {jump_offset:#x}"
            );
        }
        // The largest allowed header: up to the e820-related fields at 0x290.
        let t = TestImage {
            jump_offset: 0x8e,
            ..TestImage::default()
        };
        assert_eq!(parse(&t.build()).unwrap().setup_header_end, 0x290);
        // An image that ends inside its header.
        assert_eq!(
            parse(&image()[..0x26a]),
            Err(LinuxError::TooShort {
                len: 0x26a,
                needed: 0x26c
            })
        );
    }

    #[test]
    fn release_and_mailbox_handback_from_the_version_string() {
        let version = |text| KernelVersion(Some(text));
        let release = |major, minor| Release { major, minor };
        for (text, expected) in [
            (
                "6.12.117+deb12-amd64 (debian-kernel@lists.debian.org) #1 SMP",
                MailboxHandback::Yes(release(6, 12)),
            ),
            ("6.11.0", MailboxHandback::Yes(release(6, 11))),
            ("7.0-rc1 (x@y)", MailboxHandback::Yes(release(7, 0))),
            (
                "6.1.0-28-amd64 (debian-kernel@lists.debian.org)",
                MailboxHandback::No(release(6, 1)),
            ),
            ("6.10.14", MailboxHandback::No(release(6, 10))),
            ("5.19.0", MailboxHandback::No(release(5, 19))),
            ("", MailboxHandback::Unknown),
            ("linux", MailboxHandback::Unknown),
            ("6", MailboxHandback::Unknown),
            ("6.x", MailboxHandback::Unknown),
            ("99999999999.1", MailboxHandback::Unknown),
        ] {
            assert_eq!(version(text).mailbox_handback(), expected, "{text}");
        }
        assert_eq!(
            KernelVersion(None).mailbox_handback(),
            MailboxHandback::Unknown
        );
        assert_eq!(release(6, 11).to_string(), "6.11");
        // The synthetic image's string.
        assert_eq!(
            parse(&image()).unwrap().kernel_version.release(),
            Some(release(6, 12))
        );
    }

    #[test]
    fn version_string_is_optional() {
        let none = TestImage {
            version_pointer: 0,
            version_string: None,
            ..TestImage::default()
        };
        assert_eq!(parse(&none.build()).unwrap().kernel_version.get(), None);
        assert_eq!(
            parse(&none.build()).unwrap().kernel_version.to_string(),
            KernelVersion::UNKNOWN
        );
        // Pointing past the setup code.
        let outside = TestImage {
            version_pointer: 0x900,
            version_string: None,
            ..TestImage::default()
        };
        assert_eq!(parse(&outside.build()).unwrap().kernel_version.get(), None);
        // Not terminated inside the setup code.
        let mut bytes = image();
        for b in &mut bytes[0x500..0xa00] {
            *b = b'x';
        }
        assert_eq!(parse(&bytes).unwrap().kernel_version.get(), None);
        // Not UTF-8.
        let invalid = TestImage {
            version_string: Some(b"6.12\xff"),
            ..TestImage::default()
        };
        assert_eq!(parse(&invalid.build()).unwrap().kernel_version.get(), None);
    }

    #[test]
    fn kernel_goes_to_pref_address_when_free() {
        let bytes = image();
        let k = parse(&bytes).unwrap();
        let map = pc_map();
        assert_eq!(place_kernel(&k, &map), Ok(0x100_0000));
        // Not relocatable, same result.
        let t = TestImage {
            relocatable: 0,
            ..TestImage::default()
        };
        let bytes = t.build();
        assert_eq!(place_kernel(&parse(&bytes).unwrap(), &map), Ok(0x100_0000));
    }

    #[test]
    fn relocatable_kernel_moves_when_pref_address_is_taken() {
        let bytes = image();
        let k = parse(&bytes).unwrap();
        let mut map = pc_map();
        reserve(&mut map, 0x180_0000, 0x10_0001, "park region");
        // Lowest 2 MiB-aligned address above the reservation (which ends at
        // 0x1900001).
        let at = place_kernel(&k, &map).unwrap();
        assert_eq!(at, 0x1a0_0000);
        assert!(at.is_multiple_of(k.kernel_alignment));
        assert!(map.is_free(at, k.memory_size()));
        map.reserve(
            at,
            k.memory_size(),
            "kernel",
            ReportAs::Usable,
            Lifetime::Boot,
        )
        .unwrap();

        // A 16 MiB alignment.
        let t = TestImage {
            kernel_alignment: 0x100_0000,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k16 = parse(&bytes).unwrap();
        // The kernel above ends at 0x3e00000.
        assert_eq!(place_kernel(&k16, &map), Ok(0x400_0000));

        // An unaligned pref_address is not used for a relocatable kernel.
        let t = TestImage {
            pref_address: 0x4000_1000,
            ..TestImage::default()
        };
        let bytes = t.build();
        assert_eq!(
            place_kernel(&parse(&bytes).unwrap(), &pc_map()),
            Ok(0x100_0000)
        );
    }

    #[test]
    fn relocated_kernel_falls_back_below_16_mib() {
        // RAM up to 32 MiB, the upper half taken: only 1-16 MiB is left.
        let mut map = MemoryMap::new(&[ram(0, 0x9fc00), ram(MIB, 31 * MIB)]).unwrap();
        reserve(&mut map, 16 * MIB, 16 * MIB, "payload");
        let t = TestImage {
            init_size: 0x40_0000,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        assert_eq!(place_kernel(&k, &map), Ok(2 * MIB));
        // A kernel bigger than what is left.
        let err = place_kernel(&parse(&image()).unwrap(), &map).unwrap_err();
        assert_eq!(
            err,
            LinuxError::NoSpaceForKernel {
                size: 0x240_0000,
                alignment: 0x20_0000
            }
        );
        assert_eq!(
            err.to_string(),
            "no free 0x2400000 bytes aligned to 0x200000 for the kernel between 0x100000 and 0x100000000"
        );
    }

    #[test]
    fn relocated_kernel_stays_below_4_gib() {
        let mut map = pc_map();
        reserve(&mut map, MIB, 2 * GIB - MIB, "everything low");
        let bytes = image();
        let k = parse(&bytes).unwrap();
        assert!(matches!(
            place_kernel(&k, &map),
            Err(LinuxError::NoSpaceForKernel { .. })
        ));
    }

    #[test]
    fn non_relocatable_kernel_names_the_conflict() {
        let t = TestImage {
            relocatable: 0,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();

        let mut map = pc_map();
        reserve(&mut map, 0x200_0000, 0x10_0000, "park region");
        reserve(&mut map, 0x300_0000, 0x10_0000, "ACPI copy");
        let err = place_kernel(&k, &map).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap park region 0x2000000-0x2100000 and it is not relocatable"
        );

        // Firmware memory in the way.
        let map = MemoryMap::new(&[
            ram(MIB, 31 * MIB),
            region(32 * MIB, MIB, MemoryKind::AcpiNvs),
            ram(33 * MIB, GIB),
        ])
        .unwrap();
        assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap ACPI NVS memory 0x2000000-0x2100000 and it is not relocatable"
        );

        // A hole in the map.
        let map = MemoryMap::new(&[ram(MIB, 31 * MIB), ram(40 * MIB, GIB)]).unwrap();
        assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap a hole in the memory map 0x2000000-0x2800000 and it is not relocatable"
        );

        // No pref_address: the traditional bzImage address.
        let t = TestImage {
            relocatable: 0,
            pref_address: 0,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        assert_eq!(place_kernel(&k, &pc_map()), Ok(0x10_0000));
        let mut map = pc_map();
        reserve(&mut map, 0x10_0000, 0x4_0000, "payload image");
        assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x100000 (the default bzImage load address), which overlap payload image 0x100000-0x140000 and it is not relocatable"
        );

        // A range running off the end of the address space.
        let t = TestImage {
            relocatable: 0,
            pref_address: u64::MAX - 0xfff,
            ..TestImage::default()
        };
        let bytes = t.build();
        assert!(matches!(
            place_kernel(&parse(&bytes).unwrap(), &pc_map()),
            Err(LinuxError::NotRelocatable {
                conflict: Conflict {
                    what: "the end of the address space",
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn initrd_goes_high_below_initrd_addr_max() {
        let t = TestImage {
            xloadflags: XLF_KERNEL_64,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        let mut map = pc_map();
        map.reserve(
            0x100_0000,
            k.memory_size(),
            "kernel",
            ReportAs::Usable,
            Lifetime::Boot,
        )
        .unwrap();
        // The top of the RAM below 2 GiB, not above 4 GiB.
        let size = 30 * MIB + 123;
        let at = place_initrd(&k, size, &map).unwrap();
        // Rounded up to whole pages.
        assert_eq!(at, 2 * GIB - 30 * MIB - PAGE_SIZE);
        assert!(at.is_multiple_of(PAGE_SIZE));
        assert!(map.is_free(at, size));

        // A lower initrd_addr_max: the initrd's last byte may be exactly at it.
        let t = TestImage {
            xloadflags: XLF_KERNEL_64,
            initrd_addr_max: 0x37ff_ffff,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        assert_eq!(place_initrd(&k, 0x2_0000, &map), Ok(0x37fe_0000));
        // Sizes that are not whole pages end below the limit too.
        assert_eq!(place_initrd(&k, 0x2_0001, &map), Ok(0x37fd_f000));
    }

    #[test]
    fn initrd_goes_above_4_gib_only_with_the_flag() {
        let map = pc_map();
        let bytes = image();
        let k = parse(&bytes).unwrap();
        assert!(k.can_load_initrd_above_4g);
        assert_eq!(place_initrd(&k, 64 * MIB, &map), Ok(8 * GIB - 64 * MIB));
        // Bigger than anything below 4 GiB.
        assert_eq!(place_initrd(&k, 3 * GIB, &map), Ok(5 * GIB));

        let t = TestImage {
            xloadflags: XLF_KERNEL_64,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        assert_eq!(place_initrd(&k, 64 * MIB, &map), Ok(2 * GIB - 64 * MIB));
        let err = place_initrd(&k, 3 * GIB, &map).unwrap_err();
        assert_eq!(
            err,
            LinuxError::InitrdTooBig {
                size: 3 * GIB,
                limit: 0x8000_0000,
                largest: 2 * GIB - MIB
            }
        );
        assert_eq!(
            err.to_string(),
            "initrd of 3072 MiB does not fit below 0x80000000 (largest free range 2047 MiB)"
        );
    }

    #[test]
    fn initrd_errors() {
        let t = TestImage {
            xloadflags: XLF_KERNEL_64,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        // 64 MiB of RAM; the kernel takes 16-52 MiB, leaving 15 MiB below it and 12 MiB
        // above, less a reservation that cuts the lower part to 14.5 MiB.
        let mut map = MemoryMap::new(&[ram(0, 0x9fc00), ram(MIB, 63 * MIB)]).unwrap();
        map.reserve(
            0x100_0000,
            k.memory_size(),
            "kernel",
            ReportAs::Usable,
            Lifetime::Boot,
        )
        .unwrap();
        reserve(&mut map, MIB, MIB / 2, "payload");
        let err = place_initrd(&k, 20 * MIB + 1, &map).unwrap_err();
        assert_eq!(
            err.to_string(),
            "initrd of 20.1 MiB does not fit below 0x80000000 (largest free range 14.5 MiB)"
        );
        assert_eq!(place_initrd(&k, 0, &map), Err(LinuxError::EmptyInitrd));
        // With the flag the message has no limit.
        let bytes = image();
        let k = parse(&bytes).unwrap();
        assert_eq!(
            place_initrd(&k, 20 * MIB, &map).unwrap_err().to_string(),
            "initrd of 20 MiB does not fit in free memory (largest free range 14.5 MiB)"
        );
        // The low 640 KiB never takes an initrd.
        let map = MemoryMap::new(&[ram(0, 0x9fc00)]).unwrap();
        assert!(place_initrd(&k, PAGE_SIZE, &map).is_err());
    }

    #[test]
    fn mib_rounding() {
        let show = |bytes, round_up| Mib { bytes, round_up }.to_string();
        assert_eq!(show(0, true), "0 MiB");
        assert_eq!(show(20 * MIB, true), "20 MiB");
        assert_eq!(show(20 * MIB + 1, true), "20.1 MiB");
        assert_eq!(show(20 * MIB + 1, false), "20 MiB");
        assert_eq!(show(20 * MIB - 1, true), "20 MiB");
        assert_eq!(show(20 * MIB - 1, false), "19.9 MiB");
        assert_eq!(show(MIB / 2, false), "0.5 MiB");
        assert_eq!(show(u64::MAX, true), "17592186044416 MiB");
    }

    fn args(e820: &[(u64, u64, u32)]) -> BootArgs<'_> {
        BootArgs {
            cmdline_addr: 0x1_2345_6000,
            cmdline_len: 2047,
            initrd: Some((0x2_0000_1000, 0x1_0000_0123)),
            rsdp: 0xf_5250,
            e820,
        }
    }

    #[test]
    fn boot_params_fields_at_their_offsets() {
        let bytes = image();
        let k = parse(&bytes).unwrap();
        let e820 = [
            (0, 0x9fc00, 1),
            (0xf0000, 0x10000, 2),
            (0x10_0000, 0x7ff0_0000, 1),
        ];
        let mut page = [0xaau8; BOOT_PARAMS_SIZE];
        build_boot_params(&k, &bytes, &mut page, &args(&e820)).unwrap();

        assert_eq!(r64(&page, 0x070), 0xf_5250);
        assert_eq!(r32(&page, 0x0c0), 0x2);
        assert_eq!(r32(&page, 0x0c4), 0x1);
        assert_eq!(r32(&page, 0x0c8), 0x1);
        assert_eq!(r8(&page, 0x1e8), 3);
        assert_eq!(r8(&page, 0x1ef), 0, "sentinel");
        // The header, copied.
        assert_eq!(r8(&page, 0x1f1), 4);
        assert_eq!(r16(&page, 0x1fe), 0xaa55);
        assert_eq!(&page[0x202..0x206], b"HdrS");
        assert_eq!(r16(&page, 0x206), 0x020F);
        assert_eq!(r16(&page, 0x1fa), 0xffff, "vid_mode");
        assert_eq!(r32(&page, 0x230), 0x20_0000);
        assert_eq!(r64(&page, 0x258), 0x100_0000);
        assert_eq!(r32(&page, 0x260), 0x240_0000);
        assert_eq!(r32(&page, 0x268), 0x12_3400);
        // What parkboot fills in.
        assert_eq!(r8(&page, 0x210), 0xff, "type_of_loader");
        assert_eq!(
            r8(&page, 0x211),
            0x01,
            "loadflags: LOADED_HIGH, no CAN_USE_HEAP"
        );
        assert_eq!(r32(&page, 0x214), 0x10_0000, "code32_start untouched");
        assert_eq!(r32(&page, 0x218), 0x1000);
        assert_eq!(r32(&page, 0x21c), 0x123);
        assert_eq!(r32(&page, 0x228), 0x2345_6000);
        assert_eq!(r64(&page, 0x250), 0, "setup_data");
        // The e820 table, 20 bytes an entry.
        for (i, &(addr, size, kind)) in e820.iter().enumerate() {
            let at = 0x2d0 + 20 * i;
            assert_eq!(r64(&page, at), addr);
            assert_eq!(r64(&page, at + 8), size);
            assert_eq!(r32(&page, at + 16), kind);
        }
        // Nothing else: zero outside the header and the fields written.
        let written = [
            0x070..0x078,
            0x0c0..0x0cc,
            0x1e8..0x1e9,
            0x1f1..0x26c,
            0x2d0..0x2d0 + 60,
        ];
        for (at, &b) in page.iter().enumerate() {
            if !written.iter().any(|r| r.contains(&at)) {
                assert_eq!(b, 0, "byte {at:#x}");
            }
        }
    }

    #[test]
    fn boot_params_low_addresses_and_no_initrd() {
        let t = TestImage {
            xloadflags: XLF_KERNEL_64,
            loadflags: 0x20,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        let mut page = [0u8; BOOT_PARAMS_SIZE];
        let a = BootArgs {
            cmdline_addr: 0x9_e000,
            cmdline_len: 0,
            initrd: None,
            rsdp: 0,
            e820: &[],
        };
        build_boot_params(&k, &bytes, &mut page, &a).unwrap();
        assert_eq!(r32(&page, 0x228), 0x9_e000);
        assert_eq!(r32(&page, 0x0c8), 0);
        assert_eq!(r32(&page, 0x218), 0);
        assert_eq!(r32(&page, 0x21c), 0);
        assert_eq!(r32(&page, 0x0c0), 0);
        assert_eq!(r64(&page, 0x070), 0);
        assert_eq!(r8(&page, 0x1e8), 0);
        // QUIET_FLAG from the image is kept, LOADED_HIGH added.
        assert_eq!(r8(&page, 0x211), 0x21);
        // The initrd right up to initrd_addr_max.
        let a = BootArgs {
            initrd: Some((0x7000_0000, 0x1000_0000)),
            ..a
        };
        build_boot_params(&k, &bytes, &mut page, &a).unwrap();
        assert_eq!(r32(&page, 0x218), 0x7000_0000);
        assert_eq!(r32(&page, 0x21c), 0x1000_0000);
        // A 2.12 header: only its bytes are copied.
        let t = TestImage {
            version: 0x020C,
            jump_offset: 0x66,
            ..TestImage::default()
        };
        let bytes = t.build();
        let k = parse(&bytes).unwrap();
        build_boot_params(&k, &bytes, &mut page, &a).unwrap();
        assert_eq!(r32(&page, 0x264), 0x190);
        assert_eq!(r32(&page, 0x268), 0);
    }

    #[test]
    fn boot_params_errors_leave_the_page_alone() {
        let bytes = image();
        let k = parse(&bytes).unwrap();
        let mut page = [0xaau8; BOOT_PARAMS_SIZE];
        let untouched = page;

        let a = BootArgs {
            cmdline_len: 3000,
            ..args(&[])
        };
        let err = build_boot_params(&k, &bytes, &mut page, &a).unwrap_err();
        assert_eq!(
            err.to_string(),
            "command line is 3000 bytes; this kernel accepts at most 2047"
        );
        assert_eq!(page, untouched);

        let many = [(0u64, 0x1000u64, 1u32); E820_MAX_ENTRIES + 1];
        let err = build_boot_params(&k, &bytes, &mut page, &args(&many)).unwrap_err();
        assert_eq!(err, LinuxError::TooManyE820Entries { count: 129 });
        assert_eq!(
            err.to_string(),
            "memory map has 129 ranges; boot_params holds at most 128"
        );
        assert_eq!(page, untouched);
        // Exactly 128 fit, the last ending at the end of the table.
        let full = [(0x1234u64, 0x1000u64, 2u32); E820_MAX_ENTRIES];
        build_boot_params(&k, &bytes, &mut page, &args(&full)).unwrap();
        assert_eq!(r8(&page, 0x1e8), 128);
        assert_eq!(r32(&page, 0x2d0 + 127 * 20 + 16), 2);
        assert_eq!(0x2d0 + 128 * 20, 0xcd0);

        // Above 4 GiB without XLF_CAN_BE_LOADED_ABOVE_4G.
        let t = TestImage {
            xloadflags: XLF_KERNEL_64,
            ..TestImage::default()
        };
        let low_bytes = t.build();
        let low = parse(&low_bytes).unwrap();
        let mut page = [0xaau8; BOOT_PARAMS_SIZE];
        let err = build_boot_params(&low, &low_bytes, &mut page, &args(&[])).unwrap_err();
        assert_eq!(
            err,
            LinuxError::CmdlineOutOfReach {
                addr: 0x1_2345_6000,
                len: 2047
            }
        );
        // The NUL must be below 4 GiB too.
        let a = BootArgs {
            cmdline_addr: FOUR_GIB - 10,
            cmdline_len: 10,
            initrd: None,
            ..args(&[])
        };
        assert!(matches!(
            build_boot_params(&low, &low_bytes, &mut page, &a),
            Err(LinuxError::CmdlineOutOfReach { .. })
        ));
        let a = BootArgs {
            cmdline_addr: 0x9_e000,
            initrd: Some((0x7000_0000, 0x1000_0001)),
            ..args(&[])
        };
        let err = build_boot_params(&low, &low_bytes, &mut page, &a).unwrap_err();
        assert_eq!(
            err.to_string(),
            "initrd at 0x70000000 (0x10000001 bytes) reaches beyond 0x80000000, the end of what this kernel accepts"
        );
        let a = BootArgs {
            initrd: Some((u64::MAX, 2)),
            ..a
        };
        assert!(build_boot_params(&k, &bytes, &mut page, &a).is_err());
        assert_eq!(page, untouched);

        // An image shorter than the header the kernel was parsed with.
        assert!(matches!(
            build_boot_params(&k, &bytes[..0x200], &mut page, &args(&[])),
            Err(LinuxError::TooShort { .. })
        ));
        assert_eq!(page, untouched);
    }

    #[test]
    fn e820_from_the_kernel_view() {
        let mut map = MemoryMap::new(&[
            ram(0, 0x9fc00),
            region(0xf0000, 0x10000, MemoryKind::Reserved),
            ram(MIB, 255 * MIB),
            region(256 * MIB, 0x1000, MemoryKind::AcpiNvs),
            region(256 * MIB + 0x1000, 0x1000, MemoryKind::AcpiReclaim),
        ])
        .unwrap();
        reserve(&mut map, 2 * MIB, MIB, "park region");
        map.reserve(
            16 * MIB,
            36 * MIB,
            "kernel",
            ReportAs::Usable,
            Lifetime::Boot,
        )
        .unwrap();
        let mut out = [(0, 0, 0); E820_MAX_ENTRIES];
        let n = e820_from_kernel_view(map.kernel_view(), &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &[
                (0, 0x9fc00, 1),
                (0xf0000, 0x10000, 2),
                (MIB, MIB, 1),
                (2 * MIB, MIB, 2),
                // The kernel's load area is the kernel's: usable, merged.
                (3 * MIB, 253 * MIB, 1),
                (256 * MIB, 0x1000, 4),
                (256 * MIB + 0x1000, 0x1000, 3),
            ]
        );
        let mut small = [(0, 0, 0); 3];
        assert_eq!(
            e820_from_kernel_view(map.kernel_view(), &mut small),
            Err(LinuxError::TooManyE820Entries { count: 7 })
        );
        assert_eq!(
            e820_from_kernel_view(core::iter::empty(), &mut small),
            Ok(0)
        );
    }

    /// The newest `vmlinuz-*` directly in `dir`.
    fn vmlinuz_in(dir: &std::path::Path) -> Option<PathBuf> {
        let mut kernels: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
            })
            .collect();
        kernels.sort();
        kernels.pop()
    }

    /// `parent/*/boot` for every directory in `parent`, sorted.
    fn boot_dirs_under(parent: &std::path::Path) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
            .map(|entries| entries.flatten().map(|e| e.path().join("boot")).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// A Debian kernel on disk, if there is one: `$PARKBOOT_LINUX_KERNEL`, then where
    /// scripts/lib/linux.sh unpacks it (target/linux/kernel/PACKAGE/boot), then
    /// target/linux/boot and /tmp/*/boot.
    fn real_kernel() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("PARKBOOT_LINUX_KERNEL") {
            return Some(PathBuf::from(path));
        }
        let linux = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/linux");
        let mut dirs = boot_dirs_under(&linux.join("kernel"));
        dirs.push(linux.join("boot"));
        dirs.extend(boot_dirs_under(std::path::Path::new("/tmp")));
        dirs.iter().find_map(|dir| vmlinuz_in(dir))
    }

    #[test]
    fn parses_a_real_debian_kernel_if_present() {
        let Some(path) = real_kernel() else {
            println!("skipped: no vmlinuz-* under target/linux or /tmp/*/boot");
            return;
        };
        let bytes = std::fs::read(&path).unwrap();
        let k = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!(
            "{}: protocol {}, version {}, init_size {:#x}, pref {:#x}, align {:#x}",
            path.display(),
            Protocol(k.version),
            k.kernel_version,
            k.init_size,
            k.pref_address,
            k.kernel_alignment
        );
        assert!(k.version >= MIN_PROTOCOL);
        assert!(k.relocatable);
        assert!(k.can_load_initrd_above_4g);
        assert!(k.kernel_alignment >= PAGE_SIZE);
        assert!(k.init_size > k.protected_mode_len());
        let release = k.kernel_version.get().expect("a version string");
        assert!(
            release.starts_with(|c: char| c.is_ascii_digit()),
            "{release}"
        );
        // Its file name carries the same release.
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            release.starts_with(name.trim_start_matches("vmlinuz-")),
            "{release}"
        );

        let map = pc_map();
        let at = place_kernel(&k, &map).unwrap();
        assert_eq!(at, k.pref_address);
        let mut page = [0u8; BOOT_PARAMS_SIZE];
        let e820 = [(0, 0x9fc00, 1), (MIB, 2 * GIB - MIB, 1)];
        build_boot_params(&k, &bytes, &mut page, &args(&e820)).unwrap();
        assert_eq!(&page[0x202..0x206], b"HdrS");
        assert_eq!(r8(&page, 0x210), 0xff);
        assert_eq!(r32(&page, 0x260) as u64, k.init_size);

        // The same kernel cut to 1 MB (the issue's reproduction) is refused by name.
        let err = parse(&bytes[..1_000_000]).unwrap_err();
        assert!(
            matches!(err, LinuxError::Truncated { declared, .. } if declared > 1_000_000),
            "{err}"
        );
    }
}
