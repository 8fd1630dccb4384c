//! The multiboot2 boot information, as the test kernel reads it (multiboot2
//! specification 2.0, §3.6): checked and walked by the `multiboot2` crate
//! ([`BootInfo::parse`]: alignment, sizes, the end tag), with the checks the kernel
//! needs before it maps the block ([`total_size`]) and a view of the memory map.
//! parkboot's own tag is read by hand from the tag's bytes (see `kernel.rs`).
//!
//! It works on a byte slice only, so it is host-tested like any other parser.

use core::fmt;

use multiboot2::{BootInformation, BootInformationHeader, LoadError, MemoryArea, TagType};

/// Value of EAX when a multiboot2 loader enters the kernel.
pub const BOOTLOADER_MAGIC: u32 = multiboot2::MAGIC;

/// Tag types of the boot information the test kernel requests in its header.
pub const TAG_CMDLINE: u32 = 1;
pub const TAG_MMAP: u32 = 6;
pub const TAG_ACPI_NEW_RSDP: u32 = 15;

/// Fixed part of the boot information: `total_size` u32, `reserved` u32.
pub const FIXED_HEADER_SIZE: usize = 8;
/// Every tag starts with `type` u32, `size` u32.
pub const TAG_HEADER_SIZE: usize = 8;
/// Tags (and the boot information itself) are 8-byte aligned.
pub const TAG_ALIGN: usize = 8;
/// The end tag is exactly its header.
pub const END_TAG_SIZE: usize = TAG_HEADER_SIZE;
/// Smallest possible boot information: the fixed part and the end tag.
pub const MIN_TOTAL_SIZE: usize = FIXED_HEADER_SIZE + END_TAG_SIZE;
/// Larger than any boot information parkboot builds (a memory map of a few hundred
/// entries, a command line, a copy of the RSDP): a bigger `total_size` means the
/// pointer is wrong, not that the loader is generous.
pub const MAX_TOTAL_SIZE: usize = 1 << 20;

/// Memory map entry: `base_addr` u64, `length` u64, `type` u32, `reserved` u32.
pub const MMAP_ENTRY_SIZE: usize = 24;
const _: () = assert!(core::mem::size_of::<MemoryArea>() == MMAP_ENTRY_SIZE);

/// Memory map entry types the test kernel checks.
pub const MEMORY_AVAILABLE: u32 = 1;
pub const MEMORY_RESERVED: u32 = 2;
pub const MEMORY_ACPI_RECLAIMABLE: u32 = 3;
pub const MEMORY_ACPI_NVS: u32 = 4;

/// What is wrong with a boot information block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// Not 8-byte aligned (address as given).
    Misaligned(u64),
    /// `total_size` below the minimum or above [`MAX_TOTAL_SIZE`], or more than the
    /// bytes given.
    TotalSize(u32),
    /// The `multiboot2` crate refused the block: a tag that does not fit, no end tag.
    Load(LoadError),
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BootInfoError::Misaligned(addr) => write!(f, "at {addr:#x}, not 8-byte aligned"),
            BootInfoError::TotalSize(size) => write!(
                f,
                "total_size {size} is not between {MIN_TOTAL_SIZE} and {MAX_TOTAL_SIZE}"
            ),
            BootInfoError::Load(LoadError::Memory(error)) => write!(f, "{error}"),
            BootInfoError::Load(error) => write!(f, "{error}"),
        }
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// `total_size` of boot information whose first [`FIXED_HEADER_SIZE`] bytes are
/// `header`, checked: how many bytes to hand to [`BootInfo::parse`].
pub fn total_size(address: u64, header: &[u8]) -> Result<usize, BootInfoError> {
    if !address.is_multiple_of(TAG_ALIGN as u64) {
        return Err(BootInfoError::Misaligned(address));
    }
    let size = read_u32(header, 0).ok_or(BootInfoError::TotalSize(0))?;
    if (size as usize) < MIN_TOTAL_SIZE || size as usize > MAX_TOTAL_SIZE {
        return Err(BootInfoError::TotalSize(size));
    }
    Ok(size as usize)
}

/// One tag: its type and its bytes after the 8-byte tag header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag<'a> {
    pub tag_type: u32,
    pub body: &'a [u8],
}

/// Boot information the `multiboot2` crate has checked.
pub struct BootInfo<'a> {
    info: BootInformation<'a>,
}

impl<'a> BootInfo<'a> {
    /// Checks `total_size` against `bytes` and lets the `multiboot2` crate check the
    /// block (alignment, every tag's size, the end tag). `bytes` is the whole block
    /// (exactly `total_size` bytes, or more).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BootInfoError> {
        let total = read_u32(bytes, 0).ok_or(BootInfoError::TotalSize(0))?;
        let total_usize = total as usize;
        if !(MIN_TOTAL_SIZE..=MAX_TOTAL_SIZE).contains(&total_usize) || total_usize > bytes.len() {
            return Err(BootInfoError::TotalSize(total));
        }
        // SAFETY: `bytes` holds the `total_size` bytes the crate reads, and nothing
        // writes them while the shared borrow lives.
        let info = unsafe { BootInformation::load(bytes.as_ptr().cast::<BootInformationHeader>()) }
            .map_err(BootInfoError::Load)?;
        Ok(BootInfo { info })
    }

    pub fn total_size(&self) -> usize {
        self.info.total_size()
    }

    /// Every tag before the end tag, in order.
    pub fn tags(&self) -> impl Iterator<Item = Tag<'_>> {
        self.info
            .tags()
            .filter(|tag| tag.header().typ.get() != TagType::End.val())
            .map(|tag| Tag {
                tag_type: tag.header().typ.get(),
                body: tag.payload(),
            })
    }

    /// The first tag of `tag_type`.
    pub fn find(&self, tag_type: u32) -> Option<Tag<'_>> {
        self.tags().find(|tag| tag.tag_type == tag_type)
    }

    /// The command line, if the tag is there and holds a NUL-terminated UTF-8 string.
    pub fn command_line(&self) -> Option<&str> {
        self.info.command_line_tag()?.cmdline().ok()
    }

    /// The boot loader's name, if the tag is there and holds a NUL-terminated UTF-8
    /// string.
    pub fn boot_loader_name(&self) -> Option<&str> {
        self.info.boot_loader_name_tag()?.name().ok()
    }

    /// The memory map, if the tag is there with entries of the specified size.
    pub fn memory_map(&self) -> Option<MemoryMap<'_>> {
        let tag = self.info.memory_map_tag()?;
        // The crate's entry view holds only for entries of its size (it asserts it).
        if tag.entry_size() as usize != MMAP_ENTRY_SIZE {
            return None;
        }
        Some(MemoryMap {
            areas: tag.memory_areas(),
        })
    }
}

/// One memory map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRange {
    pub base: u64,
    pub length: u64,
    pub kind: u32,
}

impl MemoryRange {
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.length)
    }
}

/// The memory map tag's entries.
#[derive(Clone, Copy, Debug)]
pub struct MemoryMap<'a> {
    areas: &'a [MemoryArea],
}

impl<'a> MemoryMap<'a> {
    pub fn entries(&self) -> impl Iterator<Item = MemoryRange> + 'a {
        self.areas.iter().map(|area| MemoryRange {
            base: area.start_address(),
            length: area.size(),
            kind: area.typ().val(),
        })
    }

    /// Whether every byte of `start..start + length` lies in entries of type `kind`
    /// (one entry, or several that touch).
    pub fn covers(&self, start: u64, length: u64, kind: u32) -> bool {
        let Some(end) = start.checked_add(length) else {
            return false;
        };
        let mut cursor = start;
        // Each step moves the cursor to the end of a matching entry, so the walk takes
        // at most one step per entry.
        for _ in 0..=self.areas.len() {
            if cursor >= end {
                return true;
            }
            match self
                .entries()
                .find(|range| range.kind == kind && range.base <= cursor && cursor < range.end())
            {
                Some(range) => cursor = range.end(),
                None => return false,
            }
        }
        cursor >= end
    }

    /// The type of the entry containing `address`, if any.
    pub fn kind_at(&self, address: u64) -> Option<u32> {
        self.entries()
            .find(|range| range.base <= address && address < range.end())
            .map(|range| range.kind)
    }
}

/// A name for a memory map type, for the log.
pub fn memory_kind_name(kind: u32) -> &'static str {
    match kind {
        MEMORY_AVAILABLE => "available",
        MEMORY_RESERVED => "reserved",
        MEMORY_ACPI_RECLAIMABLE => "ACPI reclaimable",
        MEMORY_ACPI_NVS => "ACPI NVS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG_END: u32 = TagType::End.val();
    const TAG_BOOT_LOADER_NAME: u32 = TagType::BootLoaderName.val();

    fn align_up(value: usize, align: usize) -> usize {
        value.div_ceil(align) * align
    }

    /// `bytes` in an 8-byte aligned buffer, as a loader hands them over.
    fn aligned(bytes: &[u8]) -> Vec<u64> {
        bytes
            .chunks(8)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word[..chunk.len()].copy_from_slice(chunk);
                u64::from_le_bytes(word)
            })
            .collect()
    }

    /// The first `len` bytes of an [`aligned`] buffer.
    fn bytes_of(words: &[u64], len: usize) -> &[u8] {
        assert!(len <= words.len() * 8);
        // SAFETY: `len` bytes lie within `words` (checked above); u8 has no alignment.
        unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), len) }
    }

    /// Boot information as [`BootInfo::parse`] sees it, from an aligned copy.
    fn parse(bytes: &[u8]) -> Result<usize, BootInfoError> {
        let words = aligned(bytes);
        BootInfo::parse(bytes_of(&words, bytes.len())).map(|info| info.total_size())
    }

    /// Builds boot information from (type, body) pairs and an end tag.
    fn build(tags: &[(u32, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; FIXED_HEADER_SIZE];
        for (tag_type, body) in tags {
            out.extend_from_slice(&tag_type.to_le_bytes());
            out.extend_from_slice(&((TAG_HEADER_SIZE + body.len()) as u32).to_le_bytes());
            out.extend_from_slice(body);
            out.resize(align_up(out.len(), TAG_ALIGN), 0);
        }
        out.extend_from_slice(&TAG_END.to_le_bytes());
        out.extend_from_slice(&(END_TAG_SIZE as u32).to_le_bytes());
        let total = out.len() as u32;
        out[..4].copy_from_slice(&total.to_le_bytes());
        out
    }

    fn mmap(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(MMAP_ENTRY_SIZE as u32).to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        for &(base, length, kind) in entries {
            body.extend_from_slice(&base.to_le_bytes());
            body.extend_from_slice(&length.to_le_bytes());
            body.extend_from_slice(&kind.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
        }
        body
    }

    #[test]
    fn reads_strings_and_finds_tags() {
        let bytes = build(&[
            (TAG_CMDLINE, b"testkernel.request=stop\0"),
            (TAG_BOOT_LOADER_NAME, b"parkboot 0.1.0\0"),
            (TAG_ACPI_NEW_RSDP, &[0xaa; 36]),
        ]);
        assert_eq!(total_size(0x1000, &bytes).unwrap(), bytes.len());
        let words = aligned(&bytes);
        let info = BootInfo::parse(bytes_of(&words, bytes.len())).unwrap();
        assert_eq!(info.total_size(), bytes.len());
        assert_eq!(info.tags().count(), 3);
        assert_eq!(info.command_line(), Some("testkernel.request=stop"));
        assert_eq!(info.boot_loader_name(), Some("parkboot 0.1.0"));
        assert_eq!(info.find(TAG_ACPI_NEW_RSDP).unwrap().body.len(), 36);
        assert!(info.find(TAG_MMAP).is_none());
        assert!(info.memory_map().is_none());
    }

    #[test]
    fn rejects_broken_blocks() {
        assert_eq!(
            total_size(0x1004, &[0; 8]),
            Err(BootInfoError::Misaligned(0x1004))
        );
        assert_eq!(
            total_size(0x1000, &[0; 8]),
            Err(BootInfoError::TotalSize(0))
        );
        let mut bytes = build(&[(TAG_CMDLINE, b"x\0")]);
        let end = bytes.len() - END_TAG_SIZE;
        // A tag that runs past total_size.
        let mut long_tag = bytes.clone();
        long_tag[FIXED_HEADER_SIZE + 4..FIXED_HEADER_SIZE + 8]
            .copy_from_slice(&0x100u32.to_le_bytes());
        assert!(matches!(parse(&long_tag), Err(BootInfoError::Load(_))));
        // An end tag of the wrong size.
        let mut bad_end = bytes.clone();
        bad_end[end + 4..end + 8].copy_from_slice(&16u32.to_le_bytes());
        assert!(matches!(parse(&bad_end), Err(BootInfoError::Load(_))));
        // No end tag: the last tag is something else and the block ends there.
        bytes[end..end + 4].copy_from_slice(&TAG_BOOT_LOADER_NAME.to_le_bytes());
        assert!(parse(&bytes).is_err());
        // total_size larger than the bytes given.
        let mut short = build(&[]);
        short[..4].copy_from_slice(&64u32.to_le_bytes());
        assert_eq!(parse(&short).map(|_| ()), Err(BootInfoError::TotalSize(64)));
    }

    #[test]
    fn memory_map_coverage() {
        let body = mmap(&[
            (0, 0x9f000, MEMORY_AVAILABLE),
            (0x9f000, 0x1000, MEMORY_ACPI_NVS),
            (0x100000, 0x100000, MEMORY_RESERVED),
            (0x200000, 0x100000, MEMORY_RESERVED),
            (0x300000, 0x1000, MEMORY_ACPI_NVS),
        ]);
        let bytes = build(&[(TAG_MMAP, &body)]);
        let words = aligned(&bytes);
        let info = BootInfo::parse(bytes_of(&words, bytes.len())).unwrap();
        let map = info.memory_map().unwrap();
        assert_eq!(map.entries().count(), 5);
        // Across two touching entries of the same type.
        assert!(map.covers(0x180000, 0x100000, MEMORY_RESERVED));
        // Past the end of the reserved entries.
        assert!(!map.covers(0x180000, 0x200000, MEMORY_RESERVED));
        assert!(map.covers(0x300000, 0x1000, MEMORY_ACPI_NVS));
        assert!(!map.covers(0x300000, 0x1000, MEMORY_RESERVED));
        assert!(!map.covers(0x400000, 0x1000, MEMORY_AVAILABLE));
        assert!(!map.covers(u64::MAX, 2, MEMORY_AVAILABLE));
        assert_eq!(map.kind_at(0x9f800), Some(MEMORY_ACPI_NVS));
        assert_eq!(map.kind_at(0x400000), None);
        assert_eq!(memory_kind_name(MEMORY_ACPI_NVS), "ACPI NVS");
    }
}
