//! The multiboot2 boot information, as the test kernel reads it: a small parser over
//! the bytes the loader handed over in EBX (multiboot2 specification 2.0, §3.6).
//!
//! It validates the whole tag list once ([`BootInfo::parse`]: sizes, alignment, the end
//! tag) and then hands out tags by type. It works on a byte slice only, so it is
//! host-tested like any other parser.

use core::fmt;

/// Value of EAX when a multiboot2 loader enters the kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

/// Tag types of the boot information the test kernel reads.
pub const TAG_END: u32 = 0;
pub const TAG_CMDLINE: u32 = 1;
pub const TAG_BOOT_LOADER_NAME: u32 = 2;
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

/// Memory map tag body: `entry_size` u32, `entry_version` u32, then the entries.
const MMAP_HEADER_SIZE: usize = 8;
/// Memory map entry: `base_addr` u64, `length` u64, `type` u32, `reserved` u32.
pub const MMAP_ENTRY_SIZE: usize = 24;
const MMAP_ENTRY_BASE: usize = 0;
const MMAP_ENTRY_LENGTH: usize = 8;
const MMAP_ENTRY_TYPE: usize = 16;

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
    /// `total_size` below the minimum or above [`MAX_TOTAL_SIZE`].
    TotalSize(u32),
    /// A tag at `offset` has a size below its header or runs past `total_size`.
    BadTag {
        offset: usize,
        tag_type: u32,
        size: u32,
    },
    /// No end tag before `total_size`.
    NoEndTag,
    /// The end tag is not 8 bytes.
    BadEndTag { offset: usize, size: u32 },
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BootInfoError::Misaligned(addr) => write!(f, "at {addr:#x}, not 8-byte aligned"),
            BootInfoError::TotalSize(size) => write!(
                f,
                "total_size {size} is not between {MIN_TOTAL_SIZE} and {MAX_TOTAL_SIZE}"
            ),
            BootInfoError::BadTag {
                offset,
                tag_type,
                size,
            } => write!(
                f,
                "tag type {tag_type} at offset {offset:#x} has size {size}, which does not fit"
            ),
            BootInfoError::NoEndTag => write!(f, "no end tag"),
            BootInfoError::BadEndTag { offset, size } => {
                write!(f, "end tag at offset {offset:#x} has size {size}, not 8")
            }
        }
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

fn align_up(value: usize, align: usize) -> usize {
    value.div_ceil(align) * align
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
    /// Offset of the tag from the start of the boot information.
    pub offset: usize,
    pub body: &'a [u8],
}

impl<'a> Tag<'a> {
    /// A string tag's text: up to the first NUL, if it is UTF-8.
    pub fn string(&self) -> Option<&'a str> {
        let end = self.body.iter().position(|&b| b == 0)?;
        core::str::from_utf8(&self.body[..end]).ok()
    }
}

/// Validated boot information.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo<'a> {
    bytes: &'a [u8],
}

impl<'a> BootInfo<'a> {
    /// Checks `total_size` and walks every tag up to the end tag. `bytes` is the whole
    /// block (exactly `total_size` bytes, or more).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BootInfoError> {
        let total = read_u32(bytes, 0).ok_or(BootInfoError::TotalSize(0))?;
        let total_usize = total as usize;
        if !(MIN_TOTAL_SIZE..=MAX_TOTAL_SIZE).contains(&total_usize) || total_usize > bytes.len() {
            return Err(BootInfoError::TotalSize(total));
        }
        let info = BootInfo {
            bytes: &bytes[..total_usize],
        };
        let mut offset = FIXED_HEADER_SIZE;
        loop {
            let (tag_type, size) = match (
                read_u32(info.bytes, offset),
                read_u32(info.bytes, offset + 4),
            ) {
                (Some(tag_type), Some(size)) => (tag_type, size),
                _ => return Err(BootInfoError::NoEndTag),
            };
            let fits = (size as usize) >= TAG_HEADER_SIZE
                && offset
                    .checked_add(size as usize)
                    .is_some_and(|end| end <= total_usize);
            if !fits {
                return Err(BootInfoError::BadTag {
                    offset,
                    tag_type,
                    size,
                });
            }
            if tag_type == TAG_END {
                if size as usize != END_TAG_SIZE {
                    return Err(BootInfoError::BadEndTag { offset, size });
                }
                return Ok(info);
            }
            offset = align_up(offset + size as usize, TAG_ALIGN);
        }
    }

    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }

    /// Every tag before the end tag, in order.
    pub fn tags(&self) -> Tags<'a> {
        Tags {
            bytes: self.bytes,
            offset: FIXED_HEADER_SIZE,
        }
    }

    /// The first tag of `tag_type`.
    pub fn find(&self, tag_type: u32) -> Option<Tag<'a>> {
        self.tags().find(|tag| tag.tag_type == tag_type)
    }

    /// The memory map, if the tag is there and well-formed.
    pub fn memory_map(&self) -> Option<MemoryMap<'a>> {
        let tag = self.find(TAG_MMAP)?;
        let entry_size = read_u32(tag.body, 0)? as usize;
        if entry_size < MMAP_ENTRY_SIZE || !entry_size.is_multiple_of(TAG_ALIGN) {
            return None;
        }
        Some(MemoryMap {
            entry_size,
            entries: tag.body.get(MMAP_HEADER_SIZE..)?,
        })
    }
}

/// Iterator over the tags of validated boot information.
pub struct Tags<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        let tag_type = read_u32(self.bytes, self.offset)?;
        let size = read_u32(self.bytes, self.offset + 4)? as usize;
        if tag_type == TAG_END || size < TAG_HEADER_SIZE {
            return None;
        }
        let body = self
            .bytes
            .get(self.offset + TAG_HEADER_SIZE..self.offset.checked_add(size)?)?;
        let tag = Tag {
            tag_type,
            offset: self.offset,
            body,
        };
        self.offset = align_up(self.offset + size, TAG_ALIGN);
        Some(tag)
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
    entry_size: usize,
    entries: &'a [u8],
}

impl<'a> MemoryMap<'a> {
    pub fn entries(&self) -> impl Iterator<Item = MemoryRange> + 'a {
        self.entries
            .chunks_exact(self.entry_size)
            .filter_map(|entry| {
                Some(MemoryRange {
                    base: read_u64(entry, MMAP_ENTRY_BASE)?,
                    length: read_u64(entry, MMAP_ENTRY_LENGTH)?,
                    kind: read_u32(entry, MMAP_ENTRY_TYPE)?,
                })
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
        for _ in 0..=self.entries.len() / self.entry_size {
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
        let info = BootInfo::parse(&bytes).unwrap();
        assert_eq!(info.total_size(), bytes.len());
        assert_eq!(info.tags().count(), 3);
        assert_eq!(
            info.find(TAG_CMDLINE).unwrap().string(),
            Some("testkernel.request=stop")
        );
        assert_eq!(
            info.find(TAG_BOOT_LOADER_NAME).unwrap().string(),
            Some("parkboot 0.1.0")
        );
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
        assert!(matches!(
            BootInfo::parse(&long_tag),
            Err(BootInfoError::BadTag { .. })
        ));
        // An end tag of the wrong size.
        let mut bad_end = bytes.clone();
        bad_end[end + 4..end + 8].copy_from_slice(&16u32.to_le_bytes());
        assert!(matches!(
            BootInfo::parse(&bad_end),
            Err(BootInfoError::BadTag { .. }) | Err(BootInfoError::BadEndTag { .. })
        ));
        // No end tag: the last tag is something else and the block ends there.
        bytes[end..end + 4].copy_from_slice(&TAG_BOOT_LOADER_NAME.to_le_bytes());
        assert!(BootInfo::parse(&bytes).is_err());
        // total_size larger than the bytes given.
        let mut short = build(&[]);
        short[..4].copy_from_slice(&64u32.to_le_bytes());
        assert_eq!(
            BootInfo::parse(&short).map(|_| ()),
            Err(BootInfoError::TotalSize(64))
        );
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
        let info = BootInfo::parse(&bytes).unwrap();
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
