//! CBFS, the coreboot file system in the boot flash: find it, walk its files, read one.
//!
//! On x86 the whole boot medium (the flash) is memory-mapped so that its last byte is
//! at 0xFFFF_FFFF: medium offset `O` is at physical `4 GiB - boot_media_size + O`.
//! [`Cbfs::locate`] finds the CBFS region from the coreboot table's
//! LB_TAG_BOOT_MEDIA_PARAMS record ([`CbfsLocation`]), or else from the master header
//! ("ORBC") whose address is the 32-bit value at 0xFFFF_FFFC.
//!
//! The region is a chain of files. Each starts on a 64-byte boundary with a
//! [`FileHeader`] ("LARCHIVE", then big-endian `len`, `type`, `attributes_offset`,
//! `offset`), then the NUL-terminated name, then the attributes (tag, length, ...),
//! then at `offset` the `len` bytes of stored data. The attributes parkboot reads are
//! compression ([`Compression`]: none, LZMA or LZ4, with the decompressed size) and the
//! hash (SHA-256 is verified before a file is used). The layout is coreboot's
//! `commonlib/bsd/include/commonlib/bsd/cbfs_serialized.h`, and the tests read images
//! made by `cbfstool` itself.
//!
//! Everything read from the flash is untrusted: every length is checked against the
//! region, and each thing that can be wrong is its own [`CbfsError`] naming the file
//! (or offset) and what was found. Nothing here panics or reads outside the region.

mod lz4;
mod lzma;
#[cfg(test)]
mod tests;

use crate::platform::{CbfsLocation, PhysicalMemory};
use core::fmt;
use core::mem::{offset_of, size_of};

pub use lzma::MAX_LC_PLUS_LP;

/// Files start on this boundary in the region.
pub const CBFS_ALIGNMENT: usize = 64;
/// The magic at the start of every file header.
pub const FILE_MAGIC: [u8; 8] = *b"LARCHIVE";
/// The master header's magic ("ORBC" as a big-endian u32).
pub const MASTER_HEADER_MAGIC: u32 = 0x4f52_4243;
/// Where x86 keeps the (little-endian, 32-bit) address of the master header.
pub const MASTER_HEADER_POINTER: u64 = 0xffff_fffc;
// FOUR_GIB: the first address above the memory-mapped boot medium.
use crate::memory::FOUR_GIB;

/// File types (`enum cbfs_type`).
pub const TYPE_DELETED: u32 = 0x0000_0000;
pub const TYPE_NULL: u32 = 0xffff_ffff;
pub const TYPE_BOOTBLOCK: u32 = 0x01;
pub const TYPE_CBFSHEADER: u32 = 0x02;
pub const TYPE_LEGACY_STAGE: u32 = 0x10;
pub const TYPE_STAGE: u32 = 0x11;
pub const TYPE_SELF: u32 = 0x20;
pub const TYPE_FIT: u32 = 0x21;
pub const TYPE_OPTIONROM: u32 = 0x30;
pub const TYPE_BOOTSPLASH: u32 = 0x40;
pub const TYPE_RAW: u32 = 0x50;
pub const TYPE_VSA: u32 = 0x51;
pub const TYPE_MBI: u32 = 0x52;
pub const TYPE_MICROCODE: u32 = 0x53;
pub const TYPE_FSP: u32 = 0x60;
pub const TYPE_MRC: u32 = 0x61;
pub const TYPE_MMA: u32 = 0x62;
pub const TYPE_EFI: u32 = 0x63;
pub const TYPE_STRUCT: u32 = 0x70;
pub const TYPE_CMOS_DEFAULT: u32 = 0xaa;
pub const TYPE_SPD: u32 = 0xab;
pub const TYPE_MRC_CACHE: u32 = 0xac;
pub const TYPE_CMOS_LAYOUT: u32 = 0x01aa;

/// Attribute tags (`CBFS_FILE_ATTR_TAG_*`).
pub const ATTR_UNUSED: u32 = 0;
pub const ATTR_UNUSED2: u32 = 0xffff_ffff;
pub const ATTR_COMPRESSION: u32 = 0x4243_5a4c; // "BCZL"
pub const ATTR_HASH: u32 = 0x6873_6148; // "Hsah"

/// Compression algorithms (`enum cbfs_compression`).
pub const COMPRESS_NONE: u32 = 0;
pub const COMPRESS_LZMA: u32 = 1;
pub const COMPRESS_LZ4: u32 = 2;

/// Hash algorithms (vboot's `enum vb2_hash_algorithm`).
pub const HASH_SHA1: u8 = 1;
pub const HASH_SHA256: u8 = 2;
pub const HASH_SHA512: u8 = 3;
pub const HASH_SHA224: u8 = 4;
pub const HASH_SHA384: u8 = 5;

/// `struct cbfs_header`, the master header (all fields big-endian).
#[repr(C)]
pub struct MasterHeader {
    pub magic: u32,
    pub version: u32,
    pub romsize: u32,
    pub bootblocksize: u32,
    pub align: u32,
    pub offset: u32,
    pub architecture: u32,
    pub pad: u32,
}
const _: () = assert!(size_of::<MasterHeader>() == 32);
const _: () = assert!(offset_of!(MasterHeader, romsize) == 8);
const _: () = assert!(offset_of!(MasterHeader, bootblocksize) == 12);
const _: () = assert!(offset_of!(MasterHeader, align) == 16);
const _: () = assert!(offset_of!(MasterHeader, offset) == 20);

/// `struct cbfs_file`, the header of every file (all fields big-endian); the name
/// follows at [`FileHeader::NAME`].
#[repr(C)]
pub struct FileHeader {
    pub magic: [u8; 8],
    /// Bytes of stored data.
    pub len: u32,
    pub file_type: u32,
    /// Start of the attributes, from the header; 0 when there are none.
    pub attributes_offset: u32,
    /// Start of the data, from the header.
    pub offset: u32,
}
const _: () = assert!(offset_of!(FileHeader, len) == 8);
const _: () = assert!(offset_of!(FileHeader, file_type) == 12);
const _: () = assert!(offset_of!(FileHeader, attributes_offset) == 16);
const _: () = assert!(offset_of!(FileHeader, offset) == 20);
impl FileHeader {
    /// Where the name starts.
    pub const NAME: usize = size_of::<FileHeader>();
}
const _: () = assert!(FileHeader::NAME == 24);

/// `struct cbfs_file_attribute`: every attribute starts with a tag and its length
/// (the length counts these 8 bytes).
#[repr(C)]
pub struct AttributeHeader {
    pub tag: u32,
    pub len: u32,
}
const _: () = assert!(size_of::<AttributeHeader>() == 8);

/// `struct cbfs_file_attr_compression`.
#[repr(C)]
pub struct CompressionAttribute {
    pub tag: u32,
    pub len: u32,
    pub compression: u32,
    pub decompressed_size: u32,
}
const _: () = assert!(offset_of!(CompressionAttribute, compression) == 8);
const _: () = assert!(offset_of!(CompressionAttribute, decompressed_size) == 12);

/// `struct cbfs_file_attr_hash` with its `struct vb2_hash`: three reserved bytes, the
/// algorithm, then the digest.
#[repr(C)]
pub struct HashAttribute {
    pub tag: u32,
    pub len: u32,
    pub reserved: [u8; 3],
    pub algorithm: u8,
}
const _: () = assert!(offset_of!(HashAttribute, algorithm) == 11);
impl HashAttribute {
    /// Where the digest starts.
    pub const DIGEST: usize = size_of::<HashAttribute>();
}
const _: () = assert!(HashAttribute::DIGEST == 12);

/// Longest file name kept in an error message.
pub const MAX_ERROR_NAME: usize = 64;
/// A file name as an error message carries it (cut at [`MAX_ERROR_NAME`] bytes).
pub type ErrorName = heapless::String<MAX_ERROR_NAME>;

/// The file an error is about: its header's offset in the region and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub offset: u64,
    pub name: ErrorName,
}

impl FileRef {
    fn new(offset: usize, name: &str) -> FileRef {
        let mut kept = ErrorName::new();
        for c in name.chars() {
            if kept.push(c).is_err() {
                break;
            }
        }
        FileRef {
            offset: offset as u64,
            name: kept,
        }
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CBFS file \"{}\" at 0x{:x}", self.name, self.offset)
    }
}

/// Everything that can be wrong with CBFS or one of its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CbfsError {
    /// The boot-media record describes no medium (size 0) or one larger than 4 GiB.
    BadBootMediaSize {
        boot_media_size: u64,
    },
    /// The boot-media record's CBFS region does not fit in the medium.
    RegionOutsideMedia {
        cbfs_offset: u64,
        cbfs_size: u64,
        boot_media_size: u64,
    },
    /// Physical memory that should hold CBFS cannot be read.
    Unreadable {
        address: u64,
        len: u64,
    },
    /// The master header pointer at 0xFFFFFFFC does not leave room for a header below 4 GiB.
    BadMasterHeaderPointer {
        pointer: u32,
    },
    /// No "ORBC" where the master header should be.
    BadMasterHeaderMagic {
        address: u64,
        found: u32,
    },
    /// A master header field is impossible.
    BadMasterHeader {
        address: u64,
        what: &'static str,
        value: u32,
    },
    /// A 64-byte boundary inside the file chain holds neither a file header, erased
    /// flash, nor the master header.
    BadFileMagic {
        offset: u64,
        found: [u8; 8],
    },
    /// A file header runs past the end of the region.
    HeaderPastEnd {
        offset: u64,
        region_size: u64,
    },
    /// A file header field is impossible (e.g. the data starts inside the header).
    BadFileHeader {
        offset: u64,
        what: &'static str,
        value: u32,
    },
    /// The name is not NUL-terminated or not UTF-8.
    BadName {
        offset: u64,
        what: &'static str,
    },
    /// The file's data runs past the end of the region.
    DataPastEnd {
        file: FileRef,
        data_offset: u64,
        len: u64,
        region_size: u64,
    },
    /// An attribute's length is impossible, or the attribute is too short for its tag.
    BadAttribute {
        file: FileRef,
        /// The attribute's offset in the region.
        offset: u64,
        tag: u32,
        len: u32,
        what: &'static str,
    },
    UnsupportedCompression {
        file: FileRef,
        compression: u32,
    },
    UnsupportedHash {
        file: FileRef,
        algorithm: u8,
    },
    HashMismatch {
        file: FileRef,
        algorithm: u8,
    },
    /// The caller's buffer cannot hold the decompressed file.
    OutputTooSmall {
        file: FileRef,
        needed: u64,
        available: u64,
    },
    /// An LZMA stream is bad; `decoded` bytes of output came before the fault.
    Lzma {
        file: FileRef,
        what: &'static str,
        decoded: u64,
    },
    /// An LZ4 frame is bad; `at` is the position in the stored data.
    Lz4 {
        file: FileRef,
        what: &'static str,
        at: u64,
    },
    /// The stream decompressed to another size than the compression attribute says.
    SizeMismatch {
        file: FileRef,
        expected: u64,
        found: u64,
    },
}

impl fmt::Display for CbfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CbfsError::*;
        match self {
            BadBootMediaSize { boot_media_size } => write!(
                f,
                "CBFS: boot medium size 0x{boot_media_size:x} is not between 1 byte and 4 GiB"
            ),
            RegionOutsideMedia {
                cbfs_offset,
                cbfs_size,
                boot_media_size,
            } => write!(
                f,
                "CBFS: region 0x{cbfs_offset:x}+0x{cbfs_size:x} does not fit in the 0x{boot_media_size:x}-byte boot medium"
            ),
            Unreadable { address, len } => write!(
                f,
                "CBFS: 0x{len:x} bytes at physical 0x{address:x} cannot be read"
            ),
            BadMasterHeaderPointer { pointer } => write!(
                f,
                "CBFS: master header pointer 0x{pointer:08x} at 0xfffffffc leaves no room for a header below 4 GiB"
            ),
            BadMasterHeaderMagic { address, found } => write!(
                f,
                "CBFS: master header at 0x{address:x}: magic 0x{found:08x}, expected 0x{MASTER_HEADER_MAGIC:08x} (\"ORBC\")"
            ),
            BadMasterHeader {
                address,
                what,
                value,
            } => write!(f, "CBFS: master header at 0x{address:x}: {what} (0x{value:x})"),
            BadFileMagic { offset, found } => write!(
                f,
                "CBFS: no file header at 0x{offset:x}: magic {:?}, expected \"LARCHIVE\"",
                EscapedBytes(found)
            ),
            HeaderPastEnd {
                offset,
                region_size,
            } => write!(
                f,
                "CBFS: file header at 0x{offset:x} runs past the end of the 0x{region_size:x}-byte region"
            ),
            BadFileHeader {
                offset,
                what,
                value,
            } => write!(f, "CBFS: file header at 0x{offset:x}: {what} (0x{value:x})"),
            BadName { offset, what } => {
                write!(f, "CBFS: file header at 0x{offset:x}: name {what}")
            }
            DataPastEnd {
                file,
                data_offset,
                len,
                region_size,
            } => write!(
                f,
                "{file}: 0x{len:x} bytes of data at 0x{data_offset:x} run past the end of the 0x{region_size:x}-byte region"
            ),
            BadAttribute {
                file,
                offset,
                tag,
                len,
                what,
            } => write!(
                f,
                "{file}: attribute at 0x{offset:x} (tag 0x{tag:08x}, length {len}): {what}"
            ),
            UnsupportedCompression { file, compression } => {
                write!(f, "{file}: unsupported compression {compression}")
            }
            UnsupportedHash { file, algorithm } => {
                write!(f, "{file}: unsupported hash algorithm {algorithm}")
            }
            HashMismatch { file, algorithm } => write!(
                f,
                "{file}: {} of the stored data does not match the hash attribute",
                hash_algorithm_name(*algorithm)
            ),
            OutputTooSmall {
                file,
                needed,
                available,
            } => write!(
                f,
                "{file}: needs {needed} bytes, the buffer has {available}"
            ),
            Lzma {
                file,
                what,
                decoded,
            } => write!(
                f,
                "{file}: bad LZMA stream after {decoded} decompressed bytes: {what}"
            ),
            Lz4 { file, what, at } => write!(f, "{file}: bad LZ4 frame at byte {at}: {what}"),
            SizeMismatch {
                file,
                expected,
                found,
            } => write!(
                f,
                "{file}: decompressed to {found} bytes, the compression attribute says {expected}"
            ),
        }
    }
}

/// Bytes shown as an escaped string ("LARCHIVF", "\xff\xff...").
struct EscapedBytes<'a>(&'a [u8]);

impl fmt::Debug for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            for c in core::ascii::escape_default(b) {
                write!(f, "{}", c as char)?;
            }
        }
        f.write_str("\"")
    }
}

/// How a file's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// coreboot's LZMA: 5 property bytes, the 8-byte little-endian decompressed size,
    /// the raw LZMA stream.
    Lzma,
    /// An LZ4 frame.
    Lz4,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lzma => "LZMA",
            Compression::Lz4 => "LZ4",
        }
    }
}

/// How a file is stored, as the boot log appends it to a size: `, LZMA` or `, LZ4`, and
/// nothing for a file stored as it is.
pub struct CompressionNote(pub Compression);

impl fmt::Display for CompressionNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Compression::None => Ok(()),
            compressed => write!(f, ", {}", compressed.name()),
        }
    }
}

/// A file's hash attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHash<'m> {
    /// vboot's algorithm number ([`HASH_SHA256`] is the one parkboot verifies).
    pub algorithm: u8,
    /// The digest (for an algorithm parkboot does not know: the rest of the attribute).
    pub digest: &'m [u8],
}

/// The name of a vboot hash algorithm.
pub fn hash_algorithm_name(algorithm: u8) -> &'static str {
    match algorithm {
        HASH_SHA1 => "SHA-1",
        HASH_SHA256 => "SHA-256",
        HASH_SHA512 => "SHA-512",
        HASH_SHA224 => "SHA-224",
        HASH_SHA384 => "SHA-384",
        _ => "unknown hash",
    }
}

fn digest_len(algorithm: u8) -> Option<usize> {
    match algorithm {
        HASH_SHA1 => Some(20),
        HASH_SHA256 => Some(32),
        HASH_SHA512 => Some(64),
        HASH_SHA224 => Some(28),
        HASH_SHA384 => Some(48),
        _ => None,
    }
}

/// The name of a CBFS file type, as `cbfstool print` shows it.
pub fn type_name(file_type: u32) -> &'static str {
    match file_type {
        TYPE_DELETED => "deleted",
        TYPE_NULL => "null",
        TYPE_BOOTBLOCK => "bootblock",
        TYPE_CBFSHEADER => "cbfs header",
        TYPE_LEGACY_STAGE => "legacy stage",
        TYPE_STAGE => "stage",
        TYPE_SELF => "simple elf",
        TYPE_FIT => "fit",
        TYPE_OPTIONROM => "optionrom",
        TYPE_BOOTSPLASH => "bootsplash",
        TYPE_RAW => "raw",
        TYPE_VSA => "vsa",
        TYPE_MBI => "mbi",
        TYPE_MICROCODE => "microcode",
        TYPE_FSP => "fsp",
        TYPE_MRC => "mrc",
        TYPE_MMA => "mma",
        TYPE_EFI => "efi",
        TYPE_STRUCT => "struct",
        TYPE_CMOS_DEFAULT => "cmos_default",
        TYPE_SPD => "spd",
        TYPE_MRC_CACHE => "mrc_cache",
        TYPE_CMOS_LAYOUT => "cmos_layout",
        _ => "unknown",
    }
}

/// A big-endian u32 at `at`, or `None` when `bytes` ends before it.
fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_be_bytes(bytes.get(at..end)?.try_into().ok()?))
}

/// The CBFS region: its bytes and the physical address of the first one.
#[derive(Clone, Copy, Debug)]
pub struct Cbfs<'m> {
    bytes: &'m [u8],
    base: u64,
}

impl<'m> Cbfs<'m> {
    /// CBFS in the memory-mapped boot medium: from the boot-media record when given,
    /// else from the master header whose address is at 0xFFFFFFFC.
    pub fn locate(
        mem: &'m impl PhysicalMemory,
        location: Option<CbfsLocation>,
    ) -> Result<Cbfs<'m>, CbfsError> {
        match location {
            Some(location) => Self::from_boot_media(mem, location),
            None => Self::from_master_header(mem),
        }
    }

    /// Over a byte slice already in hand (tests, images in RAM); `base` is the
    /// physical address of `bytes[0]`.
    pub fn from_bytes(bytes: &'m [u8], base: u64) -> Cbfs<'m> {
        Cbfs { bytes, base }
    }

    fn read(mem: &'m impl PhysicalMemory, address: u64, len: u64) -> Result<&'m [u8], CbfsError> {
        let unreadable = CbfsError::Unreadable { address, len };
        let len = usize::try_from(len).map_err(|_| unreadable.clone())?;
        mem.bytes(address, len).ok_or(unreadable)
    }

    fn from_boot_media(
        mem: &'m impl PhysicalMemory,
        location: CbfsLocation,
    ) -> Result<Cbfs<'m>, CbfsError> {
        let CbfsLocation {
            cbfs_offset,
            cbfs_size,
            boot_media_size,
            ..
        } = location;
        if boot_media_size == 0 || boot_media_size > FOUR_GIB {
            return Err(CbfsError::BadBootMediaSize { boot_media_size });
        }
        if cbfs_offset
            .checked_add(cbfs_size)
            .is_none_or(|end| end > boot_media_size)
        {
            return Err(CbfsError::RegionOutsideMedia {
                cbfs_offset,
                cbfs_size,
                boot_media_size,
            });
        }
        let base = FOUR_GIB - boot_media_size + cbfs_offset;
        Ok(Cbfs {
            bytes: Self::read(mem, base, cbfs_size)?,
            base,
        })
    }

    fn from_master_header(mem: &'m impl PhysicalMemory) -> Result<Cbfs<'m>, CbfsError> {
        let pointer_bytes = Self::read(mem, MASTER_HEADER_POINTER, 4)?;
        let pointer =
            u32::from_le_bytes(
                pointer_bytes
                    .try_into()
                    .map_err(|_| CbfsError::Unreadable {
                        address: MASTER_HEADER_POINTER,
                        len: 4,
                    })?,
            );
        let address = u64::from(pointer);
        if address + size_of::<MasterHeader>() as u64 > MASTER_HEADER_POINTER {
            return Err(CbfsError::BadMasterHeaderPointer { pointer });
        }
        let header = Self::read(mem, address, size_of::<MasterHeader>() as u64)?;
        let field = |at: usize| be32(header, at).unwrap_or(0);
        let magic = field(offset_of!(MasterHeader, magic));
        if magic != MASTER_HEADER_MAGIC {
            return Err(CbfsError::BadMasterHeaderMagic {
                address,
                found: magic,
            });
        }
        let bad = |what, value| CbfsError::BadMasterHeader {
            address,
            what,
            value,
        };
        let romsize = field(offset_of!(MasterHeader, romsize));
        let bootblocksize = field(offset_of!(MasterHeader, bootblocksize));
        let align = field(offset_of!(MasterHeader, align));
        let offset = field(offset_of!(MasterHeader, offset));
        let media_base = FOUR_GIB - u64::from(romsize);
        if romsize == 0 || address < media_base {
            return Err(bad(
                "ROM size does not cover the master header below 4 GiB",
                romsize,
            ));
        }
        if align as usize != CBFS_ALIGNMENT {
            return Err(bad("alignment is not 64", align));
        }
        // x86 keeps the bootblock at the end of the ROM, outside CBFS.
        let end = romsize
            .checked_sub(bootblocksize)
            .ok_or(bad("bootblock is larger than the ROM", bootblocksize))?;
        if offset > end {
            return Err(bad("CBFS starts after its end", offset));
        }
        let base = media_base + u64::from(offset);
        Ok(Cbfs {
            bytes: Self::read(mem, base, u64::from(end - offset))?,
            base,
        })
    }

    /// Physical address of the region's first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes in the region.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The region's bytes.
    pub fn bytes(&self) -> &'m [u8] {
        self.bytes
    }

    /// Every file in the region in order, without empty space and deleted files. The
    /// iteration ends at the end of the region, at erased flash, or at the master
    /// header; it yields an error and stops at the first header that is none of these
    /// or is corrupt.
    pub fn files(&self) -> Files<'m> {
        Files {
            cbfs: *self,
            offset: 0,
            done: false,
        }
    }

    /// The file called `name` (the first one, as coreboot finds it), `None` when the
    /// walk ends without it, or the error that ended the walk before it was found.
    pub fn find(&self, name: &str) -> Result<Option<CbfsFile<'m>>, CbfsError> {
        for file in self.files() {
            let file = file?;
            if file.name == name {
                return Ok(Some(file));
            }
        }
        Ok(None)
    }

    /// The chain entry at `offset`, and where the next one is.
    fn entry_at(&self, offset: usize) -> Result<Entry<'m>, CbfsError> {
        let bytes = self.bytes;
        let region_size = bytes.len() as u64;
        let Some(magic) = bytes.get(offset..offset + FILE_MAGIC.len()) else {
            return Ok(Entry::End);
        };
        if magic != FILE_MAGIC {
            if magic.iter().all(|&b| b == 0xff) || self.holds_master_header(offset) {
                return Ok(Entry::End);
            }
            let mut found = [0; 8];
            found.copy_from_slice(magic);
            return Err(CbfsError::BadFileMagic {
                offset: offset as u64,
                found,
            });
        }
        let header_past_end = CbfsError::HeaderPastEnd {
            offset: offset as u64,
            region_size,
        };
        let field = |at: usize| be32(bytes, offset + at).ok_or(header_past_end.clone());
        let len = field(offset_of!(FileHeader, len))?;
        let file_type = field(offset_of!(FileHeader, file_type))?;
        let attributes_offset = field(offset_of!(FileHeader, attributes_offset))?;
        let data_offset = field(offset_of!(FileHeader, offset))?;
        let bad = |what, value| CbfsError::BadFileHeader {
            offset: offset as u64,
            what,
            value,
        };
        let data_start = data_offset as usize;
        if data_start < FileHeader::NAME {
            return Err(bad("data offset is inside the header", data_offset));
        }
        if attributes_offset != 0
            && !(FileHeader::NAME..=data_start).contains(&(attributes_offset as usize))
        {
            return Err(bad(
                "attributes offset is outside the header",
                attributes_offset,
            ));
        }
        let metadata = bytes
            .get(offset..offset + data_start)
            .ok_or(header_past_end.clone())?;
        let name_end = if attributes_offset == 0 {
            data_start
        } else {
            attributes_offset as usize
        };
        let name_field = metadata
            .get(FileHeader::NAME..name_end)
            .ok_or(header_past_end.clone())?;
        let bad_name = |what| CbfsError::BadName {
            offset: offset as u64,
            what,
        };
        let name_len = name_field
            .iter()
            .position(|&b| b == 0)
            .ok_or(bad_name("is not NUL-terminated"))?;
        let name_bytes = name_field
            .get(..name_len)
            .ok_or(bad_name("is not NUL-terminated"))?;
        let name = core::str::from_utf8(name_bytes).map_err(|_| bad_name("is not UTF-8"))?;
        let file_ref = || FileRef::new(offset, name);

        let data_at = offset + data_start;
        let data = data_at
            .checked_add(len as usize)
            .and_then(|end| bytes.get(data_at..end))
            .ok_or_else(|| CbfsError::DataPastEnd {
                file: file_ref(),
                data_offset: data_at as u64,
                len: u64::from(len),
                region_size,
            })?;
        let next = (data_at + len as usize).next_multiple_of(CBFS_ALIGNMENT);
        if file_type == TYPE_NULL || file_type == TYPE_DELETED {
            return Ok(Entry::Skip { next });
        }

        let mut file = CbfsFile {
            name,
            file_type,
            offset: offset as u64,
            data_offset: data_at as u64,
            compression: Compression::None,
            decompressed_size: None,
            data,
            hash: None,
        };
        if attributes_offset != 0 {
            parse_attributes(&mut file, metadata, attributes_offset as usize)?;
        }
        Ok(Entry::File { file, next })
    }

    /// Whether the 64-byte block at `offset` holds the master header (the legacy
    /// layout keeps it after the last file).
    fn holds_master_header(&self, offset: usize) -> bool {
        let end = (offset + CBFS_ALIGNMENT).min(self.bytes.len());
        (offset..end)
            .step_by(4)
            .any(|at| be32(self.bytes, at) == Some(MASTER_HEADER_MAGIC))
    }
}

/// Reads the attributes between `start` and the data (`metadata` is the header through
/// the start of the data) into `file`.
fn parse_attributes<'m>(
    file: &mut CbfsFile<'m>,
    metadata: &'m [u8],
    start: usize,
) -> Result<(), CbfsError> {
    let header_offset = file.offset as usize;
    let mut at = start;
    while at + size_of::<AttributeHeader>() <= metadata.len() {
        let tag = be32(metadata, at).unwrap_or(ATTR_UNUSED);
        let len = be32(metadata, at + offset_of!(AttributeHeader, len)).unwrap_or(0);
        if tag == ATTR_UNUSED || tag == ATTR_UNUSED2 {
            break;
        }
        let bad = |what| CbfsError::BadAttribute {
            file: FileRef::new(header_offset, file.name),
            offset: (header_offset + at) as u64,
            tag,
            len,
            what,
        };
        if (len as usize) < size_of::<AttributeHeader>() {
            return Err(bad("shorter than its own header"));
        }
        let Some(attribute) = metadata.get(at..at + len as usize) else {
            return Err(bad("runs into the file's data"));
        };
        match tag {
            ATTR_COMPRESSION => {
                if attribute.len() < size_of::<CompressionAttribute>() {
                    return Err(bad("too short for a compression attribute"));
                }
                let compression =
                    be32(attribute, offset_of!(CompressionAttribute, compression)).unwrap_or(0);
                let size = be32(
                    attribute,
                    offset_of!(CompressionAttribute, decompressed_size),
                )
                .unwrap_or(0);
                file.compression = match compression {
                    COMPRESS_NONE => Compression::None,
                    COMPRESS_LZMA => Compression::Lzma,
                    COMPRESS_LZ4 => Compression::Lz4,
                    _ => {
                        return Err(CbfsError::UnsupportedCompression {
                            file: FileRef::new(header_offset, file.name),
                            compression,
                        })
                    }
                };
                file.decompressed_size = Some(u64::from(size));
            }
            ATTR_HASH if file.hash.is_none() => {
                let too_short = || bad("too short for a hash attribute");
                if attribute.len() < HashAttribute::DIGEST {
                    return Err(too_short());
                }
                let algorithm = *attribute
                    .get(offset_of!(HashAttribute, algorithm))
                    .ok_or_else(too_short)?;
                let rest = attribute
                    .get(HashAttribute::DIGEST..)
                    .ok_or_else(too_short)?;
                let digest = match digest_len(algorithm) {
                    Some(n) => rest.get(..n).ok_or(bad("too short for its digest"))?,
                    None => rest,
                };
                file.hash = Some(FileHash { algorithm, digest });
            }
            _ => {}
        }
        at += len as usize;
    }
    Ok(())
}

/// One step of the walk.
enum Entry<'m> {
    File {
        file: CbfsFile<'m>,
        next: usize,
    },
    /// Empty space or a deleted file.
    Skip {
        next: usize,
    },
    End,
}

/// The iterator [`Cbfs::files`] returns.
pub struct Files<'m> {
    cbfs: Cbfs<'m>,
    offset: usize,
    done: bool,
}

impl<'m> Iterator for Files<'m> {
    type Item = Result<CbfsFile<'m>, CbfsError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.cbfs.entry_at(self.offset) {
                Ok(Entry::File { file, next }) => {
                    self.offset = next;
                    return Some(Ok(file));
                }
                Ok(Entry::Skip { next }) => self.offset = next,
                Ok(Entry::End) => self.done = true,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
        }
        None
    }
}

/// One file in CBFS. Its fields are what the header and attributes say; the data has
/// been bounds-checked against the region, nothing else yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbfsFile<'m> {
    pub name: &'m str,
    pub file_type: u32,
    /// Offset of the file's header in the region.
    pub offset: u64,
    /// Offset of the stored data in the region.
    pub data_offset: u64,
    pub compression: Compression,
    /// The decompressed size from the compression attribute, when there is one.
    pub decompressed_size: Option<u64>,
    /// The stored (maybe compressed) data.
    pub data: &'m [u8],
    pub hash: Option<FileHash<'m>>,
}

impl CbfsFile<'_> {
    fn file_ref(&self) -> FileRef {
        FileRef::new(self.offset as usize, self.name)
    }

    /// The file's size once decompressed (the stored size when it is not compressed).
    pub fn size(&self) -> Result<u64, CbfsError> {
        match (self.compression, self.decompressed_size) {
            (Compression::None, _) => Ok(self.data.len() as u64),
            (_, Some(size)) => Ok(size),
            (compression, None) => Err(CbfsError::UnsupportedCompression {
                file: self.file_ref(),
                compression: compression as u32,
            }),
        }
    }

    /// Checks the hash attribute, when there is one, against the stored data (cbfstool
    /// hashes the data as stored, compressed or not).
    pub fn verify(&self) -> Result<(), CbfsError> {
        let Some(hash) = self.hash else {
            return Ok(());
        };
        match hash.algorithm {
            HASH_SHA256 => {
                use sha2::{Digest, Sha256};
                if Sha256::digest(self.data).as_slice() == hash.digest {
                    Ok(())
                } else {
                    Err(CbfsError::HashMismatch {
                        file: self.file_ref(),
                        algorithm: hash.algorithm,
                    })
                }
            }
            algorithm => Err(CbfsError::UnsupportedHash {
                file: self.file_ref(),
                algorithm,
            }),
        }
    }

    /// Verifies the hash (when present), then decompresses the file into the start of
    /// `out`; returns the number of bytes written, always [`CbfsFile::size`].
    pub fn read_into(&self, out: &mut [u8]) -> Result<usize, CbfsError> {
        self.verify()?;
        let size = self.size()?;
        let available = out.len() as u64;
        let too_small = || CbfsError::OutputTooSmall {
            file: self.file_ref(),
            needed: size,
            available,
        };
        let size = usize::try_from(size).map_err(|_| too_small())?;
        let out = out.get_mut(..size).ok_or_else(too_small)?;
        let written = match self.compression {
            Compression::None => {
                out.copy_from_slice(self.data);
                size
            }
            Compression::Lzma => lzma::decode(self.data, out).map_err(|e| e.at(self.file_ref()))?,
            Compression::Lz4 => lz4::decode(self.data, out).map_err(|e| e.at(self.file_ref()))?,
        };
        if written != size {
            return Err(CbfsError::SizeMismatch {
                file: self.file_ref(),
                expected: size as u64,
                found: written as u64,
            });
        }
        Ok(written)
    }

    /// The name of the file's type, as `cbfstool print` shows it.
    pub fn type_name(&self) -> &'static str {
        type_name(self.file_type)
    }
}

/// A decoder's error before it is tied to a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    Lzma { what: &'static str, decoded: u64 },
    Lz4 { what: &'static str, at: u64 },
}

impl DecodeError {
    fn at(self, file: FileRef) -> CbfsError {
        match self {
            DecodeError::Lzma { what, decoded } => CbfsError::Lzma {
                file,
                what,
                decoded,
            },
            DecodeError::Lz4 { what, at } => CbfsError::Lz4 { file, what, at },
        }
    }
}
