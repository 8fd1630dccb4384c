//! QEMU's firmware configuration device (fw_cfg): how parkboot gets its configuration,
//! kernels and initrds when it runs in QEMU.
//!
//! The device is a keyed store of byte blobs ("items"). Small well-known items sit at
//! fixed keys (`FW_CFG_KERNEL_SIZE`, ...); everything else, including whatever the user
//! passes with `-fw_cfg name=opt/parkboot/...,file=...`, is a named "file" listed in the
//! directory item [`FW_CFG_FILE_DIR`]. The layout and the DMA protocol follow QEMU's
//! `docs/specs/fw_cfg.rst`; constant names follow QEMU's `qemu_fw_cfg.h`.
//!
//! All protocol logic lives in [`FwCfg`], written against the raw register access trait
//! [`FwCfgPorts`], so host tests drive it with a fake device. On bare metal,
//! [`IoPorts`] reaches the x86 I/O ports.
//!
//! Reads use the DMA interface when the device offers it (one port write moves a whole
//! kernel) and fall back to byte-by-byte data port reads otherwise.
//!
//! Nothing read from the device is trusted: counts are clamped, sizes are checked
//! against the caller's buffer, and no read goes past an item's advertised size (QEMU
//! pads such reads with zeros, which would silently corrupt a kernel).

use core::fmt;
use core::sync::atomic::{fence, Ordering};

use crate::memory::{MemoryKind, MemoryRegion};

// ---------------------------------------------------------------------------------------
// Registers (x86 I/O port placement).

/// First I/O port of the device on x86 (QEMU `FW_CFG_IO_BASE`).
pub const FW_CFG_IO_BASE: u16 = 0x510;
/// Selector register: a 16-bit write picks the item and rewinds its data offset.
pub const FW_CFG_PORT_SEL: u16 = FW_CFG_IO_BASE;
/// Data register: each 8-bit read returns the next byte of the selected item.
pub const FW_CFG_PORT_DATA: u16 = FW_CFG_IO_BASE + 1;
/// DMA address register, most significant 32 bits (QEMU `FW_CFG_DMA_IO_BASE`).
pub const FW_CFG_DMA_IO_BASE: u16 = 0x514;
/// DMA address register, high half: written first.
pub const FW_CFG_PORT_DMA_HIGH: u16 = FW_CFG_DMA_IO_BASE;
/// DMA address register, low half: the write here starts the transfer.
pub const FW_CFG_PORT_DMA_LOW: u16 = FW_CFG_DMA_IO_BASE + 4;

// ---------------------------------------------------------------------------------------
// Item keys.

/// Key of the signature item, which reads "QEMU" when the device is present.
pub const FW_CFG_SIGNATURE: u16 = 0x00;
/// Key of the feature bitmap (little-endian u32).
pub const FW_CFG_ID: u16 = 0x01;
/// Key of the number of CPUs started at boot (little-endian u16).
pub const FW_CFG_NB_CPUS: u16 = 0x05;
/// Key of the size of the `-kernel` image's protected-mode part (little-endian u32).
pub const FW_CFG_KERNEL_SIZE: u16 = 0x08;
/// Key of the size of the `-initrd` file (little-endian u32).
pub const FW_CFG_INITRD_SIZE: u16 = 0x0b;
/// Key of the highest CPU index plus one the machine may ever have (little-endian u16).
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
/// Key of the `-kernel` image's protected-mode part (for Linux: everything after the
/// real-mode setup sectors).
pub const FW_CFG_KERNEL_DATA: u16 = 0x11;
/// Key of the `-initrd` file's contents.
pub const FW_CFG_INITRD_DATA: u16 = 0x12;
/// Key of the size of the `-append` command line, including its NUL (little-endian u32).
pub const FW_CFG_CMDLINE_SIZE: u16 = 0x14;
/// Key of the `-append` command line, NUL-terminated.
pub const FW_CFG_CMDLINE_DATA: u16 = 0x15;
/// Key of the size of a Linux `-kernel` image's real-mode setup part (little-endian u32).
pub const FW_CFG_SETUP_SIZE: u16 = 0x17;
/// Key of a Linux `-kernel` image's real-mode setup part (with QEMU's header edits).
pub const FW_CFG_SETUP_DATA: u16 = 0x18;
/// Key of the file directory.
pub const FW_CFG_FILE_DIR: u16 = 0x19;
/// Key of the first named file; file keys are allocated upwards from here.
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
/// Key bits that address an item (the others select write mode and arch-specific items).
pub const FW_CFG_ENTRY_MASK: u16 = 0x3fff;

// ---------------------------------------------------------------------------------------
// Formats.

/// What the signature item reads on a present device.
pub const FW_CFG_SIGNATURE_BYTES: [u8; FW_CFG_SIG_SIZE] = *b"QEMU";
/// Length of the signature item.
pub const FW_CFG_SIG_SIZE: usize = 4;
/// Feature bit: the traditional selector/data interface (always set).
pub const FW_CFG_VERSION: u32 = 0x01;
/// Feature bit: the DMA interface.
pub const FW_CFG_VERSION_DMA: u32 = 0x02;
/// What the DMA address register reads when DMA is present: "QEMU CFG" big-endian.
pub const FW_CFG_DMA_SIGNATURE: u64 = u64::from_be_bytes(*b"QEMU CFG");
/// Size of a file name field in a directory entry, NUL terminator included.
pub const FW_CFG_MAX_FILE_PATH: usize = 56;
/// Size of one directory entry: be32 size, be16 select, u16 reserved, name.
const FW_CFG_FILE_SIZE: usize = 4 + 2 + 2 + FW_CFG_MAX_FILE_PATH;
/// Most files a directory can list: file keys run from [`FW_CFG_FILE_FIRST`] to
/// [`FW_CFG_ENTRY_MASK`], so a larger count can only come from a broken device.
pub const FW_CFG_MAX_FILES: u32 = (FW_CFG_ENTRY_MASK as u32) + 1 - (FW_CFG_FILE_FIRST as u32);

/// DMA control bit set by the device when a transfer failed.
pub const FW_CFG_DMA_CTL_ERROR: u32 = 0x01;
/// DMA control bit: copy `length` bytes of the item to `address`.
pub const FW_CFG_DMA_CTL_READ: u32 = 0x02;
/// DMA control bit: advance the item's data offset by `length` bytes.
pub const FW_CFG_DMA_CTL_SKIP: u32 = 0x04;
/// DMA control bit: select the item whose key is in the upper 16 bits first.
pub const FW_CFG_DMA_CTL_SELECT: u32 = 0x08;
/// Shift of the item key within the DMA control word.
const FW_CFG_DMA_CTL_SELECT_SHIFT: u32 = 16;
/// Largest DMA transfer: `length` is 32 bits wide.
const FW_CFG_DMA_MAX_LENGTH: u32 = u32::MAX;

/// How many times parkboot polls a DMA control word before giving up. QEMU completes
/// transfers synchronously inside the port write, so the first poll already sees the
/// result; the limit only keeps a broken device from hanging the boot forever.
#[cfg(not(test))]
const FW_CFG_DMA_POLL_LIMIT: u32 = 100_000_000;
/// Host tests simulate a stuck device, so they use a short limit.
#[cfg(test)]
const FW_CFG_DMA_POLL_LIMIT: u32 = 1000;

/// Bytes discarded per data port read when skipping to an offset without DMA.
const PORT_SKIP_CHUNK: usize = 64;

/// Name of the file holding QEMU's E820 memory map.
pub const E820_FILE: &str = "etc/e820";
/// Name of the file holding an unmodified copy of a Linux `-kernel` image (recent QEMU
/// versions only).
pub const BOOT_KERNEL_FILE: &str = "etc/boot/kernel";
/// Size of one `etc/e820` entry: le64 address, le64 length, le32 type.
pub const E820_ENTRY_SIZE: usize = 8 + 8 + 4;
/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;
/// E820 type of ACPI tables that may be reclaimed.
pub const E820_ACPI: u32 = 3;
/// E820 type of ACPI non-volatile storage.
pub const E820_NVS: u32 = 4;
/// E820 type of unusable memory.
pub const E820_UNUSABLE: u32 = 5;

/// Offset of the "HdrS" magic in a Linux bzImage (Linux boot protocol `header` field);
/// it tells a split Linux `-kernel` image from one QEMU loaded by itself.
const LINUX_SETUP_HEADER_MAGIC_OFFSET: usize = 0x202;
/// The Linux boot protocol's setup header magic.
const LINUX_SETUP_HEADER_MAGIC: [u8; 4] = *b"HdrS";

// ---------------------------------------------------------------------------------------
// Raw access.

/// Raw access to the device's registers.
///
/// Everything above this trait is protocol logic that host tests run against a fake
/// device; the bare-metal implementation is [`IoPorts`].
pub trait FwCfgPorts {
    /// Writes `key` to the selector register, which selects the item and rewinds its
    /// data offset to 0.
    fn select(&mut self, key: u16);
    /// Fills `buf` from the data register, one byte per read, advancing the offset.
    fn read_data(&mut self, buf: &mut [u8]);
    /// Reads the 64-bit DMA address register; it holds [`FW_CFG_DMA_SIGNATURE`] when
    /// the DMA interface exists.
    fn dma_signature(&mut self) -> u64;
    /// Writes `access_phys` to the DMA address register (high half first), which makes
    /// the device carry out the [`FwCfgDmaAccess`] found there and write its status
    /// back into that structure's `control` field.
    ///
    /// # Safety
    ///
    /// `access_phys` must be the physical address of a [`FwCfgDmaAccess`] that stays
    /// valid until the device has finished with it, and for a read its `address` and
    /// `length` must describe memory the device may overwrite.
    unsafe fn dma(&mut self, access_phys: u64);
}

/// The DMA request the device reads from memory. All fields are big-endian as stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwCfgDmaAccess {
    /// `FW_CFG_DMA_CTL_*` bits, with the item key in the upper 16 bits when
    /// [`FW_CFG_DMA_CTL_SELECT`] is set; the device writes 0 or
    /// [`FW_CFG_DMA_CTL_ERROR`] back when done.
    pub control: u32,
    /// Bytes to read or skip.
    pub length: u32,
    /// Physical address of the destination buffer.
    pub address: u64,
}

/// The real device at I/O ports 0x510..0x519, for the bare-metal payload.
///
/// Physical addresses handed to [`FwCfgPorts::dma`] equal pointers because parkboot
/// identity-maps memory.
///
/// Single register accesses go through `x86_64`'s `Port`. The two that move memory
/// stay inline assembly, the only port I/O assembly in parkboot: `rep insb` (no crate
/// offers string I/O), and the DMA doorbell, which must not be declared `nomem` as
/// `Port`'s accesses are, because the device reads and writes memory during it.
#[cfg(all(target_os = "none", target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoPorts;

#[cfg(all(target_os = "none", target_arch = "x86_64"))]
use x86_64::instructions::port::Port;

#[cfg(all(target_os = "none", target_arch = "x86_64"))]
impl FwCfgPorts for IoPorts {
    fn select(&mut self, key: u16) {
        // SAFETY: writing the fw_cfg selector only changes the device's item pointer.
        unsafe { Port::<u16>::new(FW_CFG_PORT_SEL).write(key) }
    }

    fn read_data(&mut self, buf: &mut [u8]) {
        // SAFETY: `rep insb` stores exactly `buf.len()` bytes at `buf`, which we borrow
        // mutably; the direction flag is clear on entry to inline assembly.
        unsafe {
            core::arch::asm!(
                "rep insb",
                in("dx") FW_CFG_PORT_DATA,
                inout("rdi") buf.as_mut_ptr() => _,
                inout("rcx") buf.len() => _,
                options(nostack, preserves_flags)
            );
        }
    }

    fn dma_signature(&mut self) -> u64 {
        // SAFETY: reading the DMA address register has no side effects.
        let (high, low): (u32, u32) = unsafe {
            (
                Port::new(FW_CFG_PORT_DMA_HIGH).read(),
                Port::new(FW_CFG_PORT_DMA_LOW).read(),
            )
        };
        // The register is big-endian: the port reads deliver its bytes in memory order.
        (u64::from(u32::from_be(high)) << 32) | u64::from(u32::from_be(low))
    }

    unsafe fn dma(&mut self, access_phys: u64) {
        let high = (access_phys >> 32) as u32;
        let low = access_phys as u32;
        // SAFETY: the caller vouches for the access structure; the device reads and
        // writes memory during the second write, so neither write is `nomem`.
        unsafe {
            core::arch::asm!(
                "out dx, eax",
                in("dx") FW_CFG_PORT_DMA_HIGH,
                in("eax") high.to_be(),
                options(nostack, preserves_flags)
            );
            core::arch::asm!(
                "out dx, eax",
                in("dx") FW_CFG_PORT_DMA_LOW,
                in("eax") low.to_be(),
                options(nostack, preserves_flags)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors.

/// An item name as errors report it (file names never exceed 55 bytes).
pub type ItemName = heapless::String<FW_CFG_MAX_FILE_PATH>;

/// `name` as an [`ItemName`], cut at a character boundary if it is too long.
fn item_name(name: &str) -> ItemName {
    let mut out = ItemName::new();
    for c in name.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// Why an fw_cfg operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FwCfgError {
    /// The signature item did not read "QEMU": there is no fw_cfg device (not QEMU,
    /// or a machine without one).
    NoDevice { signature: [u8; FW_CFG_SIG_SIZE] },
    /// The device set the error bit of a DMA transfer on item `select`.
    DmaFailed { select: u16 },
    /// The device never completed a DMA transfer on item `select`.
    DmaTimeout { select: u16 },
    /// No file of that name in the directory.
    NotFound { name: ItemName },
    /// The item does not fit in the caller's buffer.
    BufferTooSmall {
        item: ItemName,
        size: u64,
        capacity: u64,
    },
    /// The item has more entries than the caller's table holds.
    TooManyEntries {
        item: ItemName,
        count: u64,
        capacity: u64,
    },
    /// The item's contents are not what its format requires.
    Malformed {
        item: ItemName,
        problem: &'static str,
    },
    /// A standard item is absent because QEMU was started without `option`.
    Absent {
        item: &'static str,
        option: &'static str,
    },
    /// The `-kernel` item is not a split Linux bzImage: QEMU loaded that file itself
    /// (as a multiboot or PVH ELF kernel), so the original file is not available.
    KernelNotSplit,
}

impl fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FwCfgError::NoDevice { signature } => {
                write!(f, "no QEMU fw_cfg device: the signature item reads")?;
                for b in signature {
                    write!(f, " {b:02x}")?;
                }
                write!(f, ", expected \"QEMU\"")
            }
            FwCfgError::DmaFailed { select } => {
                write!(
                    f,
                    "fw_cfg DMA transfer on item {select:#06x} failed (device reported an error)"
                )
            }
            FwCfgError::DmaTimeout { select } => {
                write!(
                    f,
                    "fw_cfg DMA transfer on item {select:#06x} never completed"
                )
            }
            FwCfgError::NotFound { name } => write!(f, "fw_cfg has no file '{name}'"),
            FwCfgError::BufferTooSmall {
                item,
                size,
                capacity,
            } => write!(
                f,
                "fw_cfg item '{item}' is {size} bytes but the buffer holds only {capacity}"
            ),
            FwCfgError::TooManyEntries {
                item,
                count,
                capacity,
            } => write!(
                f,
                "fw_cfg item '{item}' has {count} entries but the table holds only {capacity}"
            ),
            FwCfgError::Malformed { item, problem } => {
                write!(f, "fw_cfg item '{item}' is malformed: {problem}")
            }
            FwCfgError::Absent { item, option } => {
                write!(f, "fw_cfg has no {item}: QEMU was started without {option}")
            }
            FwCfgError::KernelNotSplit => write!(
                f,
                "the fw_cfg -kernel item is not a Linux bzImage (QEMU loaded that file as a \
                 multiboot or PVH kernel itself); pass the kernel with \
                 -fw_cfg name=opt/...,file=... instead"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Directory.

/// One entry of the file directory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileEntry {
    /// Size of the file in bytes.
    pub size: u32,
    /// Key that selects the file's contents.
    pub select: u16,
    name: [u8; FW_CFG_MAX_FILE_PATH],
    name_len: usize,
}

impl FileEntry {
    /// Decodes one raw directory entry.
    fn parse(raw: &[u8; FW_CFG_FILE_SIZE]) -> Self {
        let [s0, s1, s2, s3, k0, k1, _, _, name @ ..] = *raw;
        let name_len = name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(FW_CFG_MAX_FILE_PATH);
        FileEntry {
            size: u32::from_be_bytes([s0, s1, s2, s3]),
            select: u16::from_be_bytes([k0, k1]),
            name,
            name_len,
        }
    }

    /// The file name as bytes, without the NUL terminator.
    pub fn name_bytes(&self) -> &[u8] {
        self.name.get(..self.name_len).unwrap_or(&[])
    }

    /// The file name; a name that is not valid UTF-8 is cut before the first bad byte.
    pub fn name(&self) -> &str {
        let bytes = self.name_bytes();
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => bytes
                .get(..e.valid_up_to())
                .and_then(|b| core::str::from_utf8(b).ok())
                .unwrap_or(""),
        }
    }
}

impl fmt::Debug for FileEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileEntry")
            .field("name", &self.name())
            .field("select", &self.select)
            .field("size", &self.size)
            .finish()
    }
}

/// Iterator over the file directory, from [`FwCfg::files`].
///
/// It reads the directory entry by entry as it goes; after an error it ends.
pub struct Files<'a, P: FwCfgPorts> {
    fw: &'a mut FwCfg<P>,
    remaining: u32,
}

impl<P: FwCfgPorts> Iterator for Files<'_, P> {
    type Item = Result<FileEntry, FwCfgError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut raw = [0u8; FW_CFG_FILE_SIZE];
        match self.fw.read_next(&mut raw) {
            Ok(()) => Some(Ok(FileEntry::parse(&raw))),
            Err(e) => {
                self.remaining = 0;
                Some(Err(e))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// E820.

/// One entry of QEMU's `etc/e820` memory map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    pub address: u64,
    pub length: u64,
    /// `E820_*` type.
    pub kind: u32,
}

impl E820Entry {
    /// Decodes one raw entry.
    fn parse(raw: &[u8; E820_ENTRY_SIZE]) -> Self {
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, l4, l5, l6, l7, t0, t1, t2, t3] = *raw;
        E820Entry {
            address: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            length: u64::from_le_bytes([l0, l1, l2, l3, l4, l5, l6, l7]),
            kind: u32::from_le_bytes([t0, t1, t2, t3]),
        }
    }

    /// The entry as parkboot's platform-neutral memory region.
    pub fn region(&self) -> MemoryRegion {
        let kind = match self.kind {
            E820_RAM => MemoryKind::Usable,
            E820_RESERVED => MemoryKind::Reserved,
            E820_ACPI => MemoryKind::AcpiReclaim,
            E820_NVS => MemoryKind::AcpiNvs,
            E820_UNUSABLE => MemoryKind::Unusable,
            other => MemoryKind::Other(other),
        };
        MemoryRegion {
            start: self.address,
            size: self.length,
            kind,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The device.

/// A probed fw_cfg device.
pub struct FwCfg<P: FwCfgPorts> {
    ports: P,
    features: u32,
    dma: bool,
    /// The item the last selection picked, for error messages.
    selected: u16,
}

impl<P: FwCfgPorts> FwCfg<P> {
    /// Checks that a device is there (signature "QEMU") and whether it offers DMA:
    /// the feature bit must be set and the DMA register must read "QEMU CFG".
    pub fn probe(mut ports: P) -> Result<Self, FwCfgError> {
        let mut signature = [0u8; FW_CFG_SIG_SIZE];
        ports.select(FW_CFG_SIGNATURE);
        ports.read_data(&mut signature);
        if signature != FW_CFG_SIGNATURE_BYTES {
            return Err(FwCfgError::NoDevice { signature });
        }
        let mut id = [0u8; 4];
        ports.select(FW_CFG_ID);
        ports.read_data(&mut id);
        let features = u32::from_le_bytes(id);
        let dma =
            features & FW_CFG_VERSION_DMA != 0 && ports.dma_signature() == FW_CFG_DMA_SIGNATURE;
        Ok(FwCfg {
            ports,
            features,
            dma,
            selected: FW_CFG_ID,
        })
    }

    /// Whether reads go through DMA.
    pub fn has_dma(&self) -> bool {
        self.dma
    }

    /// The raw feature bitmap (`FW_CFG_VERSION*` bits).
    pub fn features(&self) -> u32 {
        self.features
    }

    /// Gives the register access back.
    pub fn into_ports(self) -> P {
        self.ports
    }

    // -- primitives ---------------------------------------------------------------------

    /// Runs one DMA transfer and waits for the device to finish it.
    fn dma_transfer(
        &mut self,
        select: Option<u16>,
        op: u32,
        length: u32,
        address: u64,
    ) -> Result<(), FwCfgError> {
        let control = match select {
            Some(key) => {
                (u32::from(key) << FW_CFG_DMA_CTL_SELECT_SHIFT) | FW_CFG_DMA_CTL_SELECT | op
            }
            None => op,
        };
        let mut access = FwCfgDmaAccess {
            control: control.to_be(),
            length: length.to_be(),
            address: address.to_be(),
        };
        let access_ptr: *mut FwCfgDmaAccess = &mut access;
        // `control` is the first field of the `repr(C)` structure.
        let control_ptr = access_ptr.cast::<u32>().cast_const();
        // The request must be in memory before the device looks at it.
        fence(Ordering::SeqCst);
        // SAFETY: `access` lives on this stack frame until we return, and `address`
        // / `length` come from a buffer the callers borrow mutably for this transfer
        // (or are 0 for a skip).
        unsafe { self.ports.dma(access_ptr.expose_provenance() as u64) };
        for _ in 0..FW_CFG_DMA_POLL_LIMIT {
            // The device writes the status behind the compiler's back.
            fence(Ordering::SeqCst);
            // SAFETY: `control_ptr` points into `access`, which is alive and aligned.
            let status = u32::from_be(unsafe { core::ptr::read_volatile(control_ptr) });
            if status & FW_CFG_DMA_CTL_ERROR != 0 {
                return Err(FwCfgError::DmaFailed {
                    select: self.selected,
                });
            }
            if status == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(FwCfgError::DmaTimeout {
            select: self.selected,
        })
    }

    /// Fills `buf` from the current offset of the selected item (selecting `select`
    /// first when given).
    fn dma_read(&mut self, mut select: Option<u16>, buf: &mut [u8]) -> Result<(), FwCfgError> {
        if buf.is_empty() {
            if let Some(key) = select {
                self.ports.select(key);
            }
            return Ok(());
        }
        for chunk in buf.chunks_mut(FW_CFG_DMA_MAX_LENGTH as usize) {
            let length = u32::try_from(chunk.len()).unwrap_or(FW_CFG_DMA_MAX_LENGTH);
            let address = chunk.as_mut_ptr().expose_provenance() as u64;
            self.dma_transfer(select.take(), FW_CFG_DMA_CTL_READ, length, address)?;
            // The device wrote `chunk` behind the compiler's back.
            fence(Ordering::SeqCst);
        }
        Ok(())
    }

    /// Selects `key` and fills `buf` from byte `offset` of it.
    fn read_at(&mut self, key: u16, offset: u64, buf: &mut [u8]) -> Result<(), FwCfgError> {
        self.selected = key;
        if self.dma {
            let mut select = Some(key);
            let mut remaining = offset;
            while remaining > 0 {
                let step = u32::try_from(remaining).unwrap_or(FW_CFG_DMA_MAX_LENGTH);
                self.dma_transfer(select.take(), FW_CFG_DMA_CTL_SKIP, step, 0)?;
                remaining -= u64::from(step);
            }
            self.dma_read(select, buf)
        } else {
            self.ports.select(key);
            let mut scratch = [0u8; PORT_SKIP_CHUNK];
            let mut remaining = offset;
            while remaining > 0 {
                let step =
                    usize::try_from(remaining).map_or(PORT_SKIP_CHUNK, |r| r.min(PORT_SKIP_CHUNK));
                let (part, _) = scratch.split_at_mut(step);
                self.ports.read_data(part);
                remaining -= step as u64;
            }
            self.ports.read_data(buf);
            Ok(())
        }
    }

    /// Fills `buf` from where the previous read of the selected item stopped.
    fn read_next(&mut self, buf: &mut [u8]) -> Result<(), FwCfgError> {
        if self.dma {
            self.dma_read(None, buf)
        } else {
            self.ports.read_data(buf);
            Ok(())
        }
    }

    /// Reads a little-endian u32 item.
    fn read_u32(&mut self, key: u16) -> Result<u32, FwCfgError> {
        let mut raw = [0u8; 4];
        self.read(key, &mut raw)?;
        Ok(u32::from_le_bytes(raw))
    }

    /// Reads a little-endian u16 item.
    fn read_u16(&mut self, key: u16) -> Result<u16, FwCfgError> {
        let mut raw = [0u8; 2];
        self.read(key, &mut raw)?;
        Ok(u16::from_le_bytes(raw))
    }

    // -- items by key -------------------------------------------------------------------

    /// Fills `buf` from the start of item `select`. The device pads reads past the end
    /// of an item with zeros, so callers must know the item's size.
    pub fn read(&mut self, select: u16, buf: &mut [u8]) -> Result<(), FwCfgError> {
        self.read_at(select, 0, buf)
    }

    /// Fills `buf` from byte `offset` of item `select` (DMA skips there in one
    /// transfer; without DMA the bytes before `offset` are read and dropped).
    pub fn read_at_offset(
        &mut self,
        select: u16,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FwCfgError> {
        self.read_at(select, offset, buf)
    }

    /// Reads item `select` of `size` bytes into the front of `buf`, naming it `item`
    /// if `buf` is too small.
    fn read_sized(
        &mut self,
        item: &str,
        select: u16,
        size: u64,
        buf: &mut [u8],
    ) -> Result<usize, FwCfgError> {
        let len = usize::try_from(size)
            .ok()
            .filter(|&len| len <= buf.len())
            .ok_or_else(|| FwCfgError::BufferTooSmall {
                item: item_name(item),
                size,
                capacity: buf.len() as u64,
            })?;
        let (head, _) = buf.split_at_mut(len);
        self.read(select, head)?;
        Ok(len)
    }

    // -- files --------------------------------------------------------------------------

    /// Iterates over the file directory.
    pub fn files(&mut self) -> Result<Files<'_, P>, FwCfgError> {
        let mut count = [0u8; 4];
        self.read(FW_CFG_FILE_DIR, &mut count)?;
        let remaining = u32::from_be_bytes(count).min(FW_CFG_MAX_FILES);
        Ok(Files {
            fw: self,
            remaining,
        })
    }

    /// Looks `name` up in the file directory.
    pub fn find(&mut self, name: &str) -> Result<Option<FileEntry>, FwCfgError> {
        for entry in self.files()? {
            let entry = entry?;
            if entry.name_bytes() == name.as_bytes() {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Looks `name` up, failing with [`FwCfgError::NotFound`] when it is missing.
    pub fn find_required(&mut self, name: &str) -> Result<FileEntry, FwCfgError> {
        self.find(name)?.ok_or_else(|| FwCfgError::NotFound {
            name: item_name(name),
        })
    }

    /// Reads the whole file `entry` into the front of `buf`; returns its size.
    pub fn read_entry(&mut self, entry: &FileEntry, buf: &mut [u8]) -> Result<usize, FwCfgError> {
        self.read_sized(entry.name(), entry.select, u64::from(entry.size), buf)
    }

    /// Reads file `entry` from byte `offset` on, as much as fits in `buf`; returns how
    /// many bytes were read (0 at or past the end). This is how a file larger than any
    /// one buffer is read in pieces.
    pub fn read_entry_at(
        &mut self,
        entry: &FileEntry,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, FwCfgError> {
        let left = u64::from(entry.size).saturating_sub(offset);
        let len = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
        if len == 0 {
            return Ok(0);
        }
        let (head, _) = buf.split_at_mut(len);
        self.read_at(entry.select, offset, head)?;
        Ok(len)
    }

    /// Reads the whole file `name` into the front of `buf`; returns its size.
    pub fn read_file(&mut self, name: &str, buf: &mut [u8]) -> Result<usize, FwCfgError> {
        let entry = self.find_required(name)?;
        self.read_entry(&entry, buf)
    }

    // -- standard items -----------------------------------------------------------------

    /// Number of CPUs QEMU started (`-smp`).
    pub fn nb_cpus(&mut self) -> Result<u16, FwCfgError> {
        self.read_u16(FW_CFG_NB_CPUS)
    }

    /// Highest possible CPU count (`-smp maxcpus=`).
    pub fn max_cpus(&mut self) -> Result<u16, FwCfgError> {
        self.read_u16(FW_CFG_MAX_CPUS)
    }

    /// Size of the `-kernel` item [`FW_CFG_KERNEL_DATA`]; 0 without `-kernel`. For a
    /// Linux bzImage this is only the part after the setup sectors: see
    /// [`FwCfg::read_kernel_image`].
    pub fn kernel_size(&mut self) -> Result<u32, FwCfgError> {
        self.read_u32(FW_CFG_KERNEL_SIZE)
    }

    /// Size of a Linux `-kernel` image's setup part; 0 for other kernels.
    pub fn setup_size(&mut self) -> Result<u32, FwCfgError> {
        self.read_u32(FW_CFG_SETUP_SIZE)
    }

    /// Size of the `-initrd` file; 0 without `-initrd`.
    pub fn initrd_size(&mut self) -> Result<u32, FwCfgError> {
        self.read_u32(FW_CFG_INITRD_SIZE)
    }

    /// Size of the `-append` command line including its NUL; 0 without `-kernel`.
    pub fn cmdline_size(&mut self) -> Result<u32, FwCfgError> {
        self.read_u32(FW_CFG_CMDLINE_SIZE)
    }

    /// Reads the [`FW_CFG_KERNEL_DATA`] item as QEMU provides it; returns its size.
    pub fn read_kernel(&mut self, buf: &mut [u8]) -> Result<usize, FwCfgError> {
        let size = self.kernel_size()?;
        if size == 0 {
            return Err(FwCfgError::Absent {
                item: "kernel",
                option: "-kernel",
            });
        }
        self.read_sized("kernel", FW_CFG_KERNEL_DATA, u64::from(size), buf)
    }

    /// Size of the file [`FwCfg::read_kernel_image`] returns.
    pub fn kernel_image_size(&mut self) -> Result<u64, FwCfgError> {
        if let Some(entry) = self.find(BOOT_KERNEL_FILE)? {
            return Ok(u64::from(entry.size));
        }
        Ok(u64::from(self.setup_size()?) + u64::from(self.kernel_size()?))
    }

    /// Reads the Linux bzImage given to QEMU with `-kernel` as one file; returns its
    /// size.
    ///
    /// QEMU splits such an image into the real-mode setup sectors
    /// ([`FW_CFG_SETUP_DATA`]) and the rest ([`FW_CFG_KERNEL_DATA`]), so firmware can
    /// load each part where the old boot protocol wants it. parkboot loads kernels
    /// itself and wants the file: recent QEMU versions also provide it unmodified as
    /// [`BOOT_KERNEL_FILE`], which is used when present. Otherwise the two parts are
    /// concatenated, setup first; that gives the original file except for the setup
    /// header fields QEMU fills in as a boot loader would (loader type, heap end,
    /// command line and initrd pointers), which parkboot's own loader overwrites
    /// anyway.
    ///
    /// A `-kernel` that is not a bzImage (a multiboot or PVH ELF file, including
    /// parkboot itself when QEMU starts it through PVH) is loaded by QEMU directly and
    /// not available as a file: that is [`FwCfgError::KernelNotSplit`].
    pub fn read_kernel_image(&mut self, buf: &mut [u8]) -> Result<usize, FwCfgError> {
        if let Some(entry) = self.find(BOOT_KERNEL_FILE)? {
            return self.read_entry(&entry, buf);
        }
        let setup_size = self.setup_size()?;
        let kernel_size = self.kernel_size()?;
        if setup_size == 0 && kernel_size == 0 {
            return Err(FwCfgError::Absent {
                item: "kernel",
                option: "-kernel",
            });
        }
        let total = u64::from(setup_size) + u64::from(kernel_size);
        let fits = usize::try_from(total).is_ok_and(|total| total <= buf.len());
        if !fits {
            return Err(FwCfgError::BufferTooSmall {
                item: item_name("kernel"),
                size: total,
                capacity: buf.len() as u64,
            });
        }
        let setup_len = self.read_sized(
            "kernel setup",
            FW_CFG_SETUP_DATA,
            u64::from(setup_size),
            buf,
        )?;
        let magic_end = LINUX_SETUP_HEADER_MAGIC_OFFSET + LINUX_SETUP_HEADER_MAGIC.len();
        let is_bzimage = setup_len >= magic_end
            && buf.get(LINUX_SETUP_HEADER_MAGIC_OFFSET..magic_end)
                == Some(&LINUX_SETUP_HEADER_MAGIC[..]);
        if !is_bzimage {
            return Err(FwCfgError::KernelNotSplit);
        }
        let (_, rest) = buf.split_at_mut(setup_len);
        let kernel_len =
            self.read_sized("kernel", FW_CFG_KERNEL_DATA, u64::from(kernel_size), rest)?;
        Ok(setup_len + kernel_len)
    }

    /// Whether the `-kernel` item is a Linux bzImage parkboot can load (rather than a
    /// PVH or multiboot file QEMU loaded itself, or nothing).
    pub fn kernel_is_bzimage(&mut self) -> bool {
        const MAGIC_END: usize = LINUX_SETUP_HEADER_MAGIC_OFFSET + LINUX_SETUP_HEADER_MAGIC.len();
        let mut head = [0u8; MAGIC_END];
        self.setup_size().is_ok_and(|n| n as usize >= MAGIC_END)
            && self.read(FW_CFG_SETUP_DATA, &mut head).is_ok()
            && head[LINUX_SETUP_HEADER_MAGIC_OFFSET..] == LINUX_SETUP_HEADER_MAGIC
    }

    /// Reads the `-initrd` file; returns its size.
    pub fn read_initrd(&mut self, buf: &mut [u8]) -> Result<usize, FwCfgError> {
        let size = self.initrd_size()?;
        if size == 0 {
            return Err(FwCfgError::Absent {
                item: "initrd",
                option: "-initrd",
            });
        }
        self.read_sized("initrd", FW_CFG_INITRD_DATA, u64::from(size), buf)
    }

    /// Reads the `-append` command line into `buf` and returns it without its NUL; ""
    /// when QEMU has none.
    pub fn read_cmdline<'b>(&mut self, buf: &'b mut [u8]) -> Result<&'b str, FwCfgError> {
        let size = self.cmdline_size()?;
        let len = self.read_sized("cmdline", FW_CFG_CMDLINE_DATA, u64::from(size), buf)?;
        let (raw, _) = buf.split_at(len);
        let text_len = raw.iter().position(|&b| b == 0).unwrap_or(len);
        let (text, _) = raw.split_at(text_len);
        core::str::from_utf8(text).map_err(|_| FwCfgError::Malformed {
            item: item_name("cmdline"),
            problem: "not UTF-8",
        })
    }

    /// Reads QEMU's E820 memory map into `out`; returns the number of entries.
    pub fn e820(&mut self, out: &mut [E820Entry]) -> Result<usize, FwCfgError> {
        let entry = self.find_required(E820_FILE)?;
        let size = entry.size as usize;
        if !size.is_multiple_of(E820_ENTRY_SIZE) {
            return Err(FwCfgError::Malformed {
                item: item_name(E820_FILE),
                problem: "size is not a multiple of the 20-byte entry",
            });
        }
        let count = size / E820_ENTRY_SIZE;
        if count > out.len() {
            return Err(FwCfgError::TooManyEntries {
                item: item_name(E820_FILE),
                count: count as u64,
                capacity: out.len() as u64,
            });
        }
        let mut raw = [0u8; E820_ENTRY_SIZE];
        for (index, slot) in out.iter_mut().take(count).enumerate() {
            if index == 0 {
                self.read_at(entry.select, 0, &mut raw)?;
            } else {
                self.read_next(&mut raw)?;
            }
            *slot = E820Entry::parse(&raw);
        }
        Ok(count)
    }
}

// ---------------------------------------------------------------------------------------
// Host tests.

#[cfg(test)]
mod tests;
