//! coreboot's CBMEM console: the in-memory log `cbmem -c` prints.
//!
//! coreboot names it in its table (LB_TAG_CBMEM_CONSOLE, the address of a
//! `struct cbmem_console { u32 size; u32 cursor; u8 body[size]; }`). The low 28 bits of
//! `cursor` are the next write position; bit 31 says the buffer has wrapped at least
//! once (a ring: the oldest text then starts at the cursor); bits 28-30 are reserved
//! flags that a writer keeps. [`CbmemConsole::write`] appends exactly as coreboot's
//! `cbmemc_tx_byte` does, so coreboot's own readers (the `cbmem` utility, Linux's
//! memconsole driver, libpayload) show parkboot's lines after coreboot's.
//!
//! Nothing here touches memory it was not handed: the payload passes the region as a
//! slice after [`check_placement`] has found it inside firmware-owned memory.

use core::fmt;
use core::mem::{offset_of, size_of};

use crate::memory::MemoryRegion;
use crate::wire::{wire_struct, WireField};

/// Largest body the format can describe: the cursor has 28 bits.
pub const MAX_BODY_SIZE: u32 = 1 << 28;
/// The cursor bits that hold the write position.
pub const CURSOR_MASK: u32 = MAX_BODY_SIZE - 1;
/// Cursor flag: the ring has wrapped, the oldest text starts at the cursor.
pub const OVERFLOW: u32 = 1 << 31;

wire_struct! {
    /// `struct cbmem_console` without its body.
    pub struct CbmemConsoleHeader {
        /// Bytes in the body that follows the header.
        pub size: u32,
        /// Write position (low 28 bits) and flags ([`OVERFLOW`]).
        pub cursor: u32,
    }
}

const _: () = assert!(size_of::<CbmemConsoleHeader>() == 8);
const _: () = assert!(offset_of!(CbmemConsoleHeader, size) == 0);
const _: () = assert!(offset_of!(CbmemConsoleHeader, cursor) == 4);

/// Why a CBMEM console cannot be written to. `addr` is the physical address of its
/// header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CbmemConsoleError {
    /// The region handed over cannot even hold the 8-byte header.
    RegionTooSmall { addr: u64, region_bytes: usize },
    /// `size` is 0: coreboot writes nothing to such a console either.
    ZeroSize { addr: u64 },
    /// `size` is beyond what the 28-bit cursor can address.
    SizeTooLarge { addr: u64, size: u32 },
    /// Header plus `size` bytes of body run past the region handed over.
    SizePastRegion {
        addr: u64,
        size: u32,
        region_bytes: usize,
    },
    /// The write position is not inside the body.
    CursorPastEnd { addr: u64, cursor: u32, size: u32 },
    /// Header plus body are not inside one firmware-owned range of the memory map
    /// (they are in free RAM only, or where the map says nothing).
    NotFirmwareMemory { addr: u64, end: u64 },
}

impl fmt::Display for CbmemConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CbmemConsoleError::RegionTooSmall { addr, region_bytes } => write!(
                f,
                "CBMEM console at {addr:#x}: region of {region_bytes} bytes cannot hold the {}-byte header",
                CbmemConsoleHeader::SIZE
            ),
            CbmemConsoleError::ZeroSize { addr } => {
                write!(f, "CBMEM console at {addr:#x}: size is 0")
            }
            CbmemConsoleError::SizeTooLarge { addr, size } => write!(
                f,
                "CBMEM console at {addr:#x}: size {size:#x} is not below {MAX_BODY_SIZE:#x}, the most a 28-bit cursor addresses"
            ),
            CbmemConsoleError::SizePastRegion {
                addr,
                size,
                region_bytes,
            } => write!(
                f,
                "CBMEM console at {addr:#x}: header and {size:#x} bytes of body run past the {region_bytes:#x}-byte region"
            ),
            CbmemConsoleError::CursorPastEnd { addr, cursor, size } => write!(
                f,
                "CBMEM console at {addr:#x}: cursor {cursor:#x} (position {:#x}) is not below size {size:#x}",
                cursor & CURSOR_MASK
            ),
            CbmemConsoleError::NotFirmwareMemory { addr, end } => write!(
                f,
                "CBMEM console at {addr:#x}-{end:#x}: not inside one firmware-owned range of the memory map"
            ),
        }
    }
}

/// Checks a header read from `addr` and returns the bytes header and body take.
pub fn check_header(addr: u64, header: CbmemConsoleHeader) -> Result<usize, CbmemConsoleError> {
    if header.size == 0 {
        return Err(CbmemConsoleError::ZeroSize { addr });
    }
    if header.size > MAX_BODY_SIZE {
        return Err(CbmemConsoleError::SizeTooLarge {
            addr,
            size: header.size,
        });
    }
    if header.cursor & CURSOR_MASK >= header.size {
        return Err(CbmemConsoleError::CursorPastEnd {
            addr,
            cursor: header.cursor,
            size: header.size,
        });
    }
    Ok(CbmemConsoleHeader::SIZE + header.size as usize)
}

/// Checks that the console (header at `addr`, `total_bytes` long) lies inside one
/// range of `memory` that is not free RAM. Where ranges overlap, parkboot's memory map
/// lets the firmware-owned kind win (`memory::MemoryMap`), so such a range is never
/// handed out and a kernel finds it reserved.
pub fn check_placement(
    memory: &[MemoryRegion],
    addr: u64,
    total_bytes: usize,
) -> Result<(), CbmemConsoleError> {
    let end = addr.saturating_add(total_bytes as u64);
    if memory
        .iter()
        .any(|r| !r.kind.is_usable() && r.start <= addr && end <= r.end())
    {
        Ok(())
    } else {
        Err(CbmemConsoleError::NotFirmwareMemory { addr, end })
    }
}

/// A CBMEM console over its memory (header and body).
pub struct CbmemConsole<'m> {
    /// Header and body; exactly `8 + size` bytes.
    region: &'m mut [u8],
    size: u32,
    /// The cursor as it will be stored: flags and position.
    cursor: u32,
}

impl<'m> CbmemConsole<'m> {
    /// The console whose header starts `region` (`addr` is its physical address, for
    /// errors). Text already there (coreboot's log) is kept; writes go on at its cursor.
    pub fn open(region: &'m mut [u8], addr: u64) -> Result<Self, CbmemConsoleError> {
        let region_bytes = region.len();
        let header = CbmemConsoleHeader::read_from(region)
            .ok_or(CbmemConsoleError::RegionTooSmall { addr, region_bytes })?;
        let total = check_header(addr, header)?;
        let region = region
            .get_mut(..total)
            .ok_or(CbmemConsoleError::SizePastRegion {
                addr,
                size: header.size,
                region_bytes,
            })?;
        Ok(CbmemConsole {
            region,
            size: header.size,
            cursor: header.cursor,
        })
    }

    /// Makes `region` an empty console (what coreboot does when it creates one) and
    /// opens it.
    pub fn create(region: &'m mut [u8], addr: u64) -> Result<Self, CbmemConsoleError> {
        let region_bytes = region.len();
        let size = region_bytes
            .checked_sub(CbmemConsoleHeader::SIZE)
            .ok_or(CbmemConsoleError::RegionTooSmall { addr, region_bytes })?;
        let size = u32::try_from(size)
            .ok()
            .filter(|&size| size <= MAX_BODY_SIZE)
            .ok_or(CbmemConsoleError::SizeTooLarge {
                addr,
                size: u32::try_from(size).unwrap_or(u32::MAX),
            })?;
        CbmemConsoleHeader { size, cursor: 0 }
            .write_to(region)
            .ok_or(CbmemConsoleError::RegionTooSmall { addr, region_bytes })?;
        Self::open(region, addr)
    }

    /// Bytes in the body.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Where the next byte goes.
    pub fn position(&self) -> u32 {
        self.cursor & CURSOR_MASK
    }

    /// Whether the ring has wrapped (then the oldest text starts at the position).
    pub fn overflowed(&self) -> bool {
        self.cursor & OVERFLOW != 0
    }

    /// The raw cursor field: flags and position.
    pub fn cursor(&self) -> u32 {
        self.cursor
    }

    /// Appends `bytes` as coreboot's `cbmemc_tx_byte` does, one after another: at the
    /// end of the body the position goes back to 0 and [`OVERFLOW`] is set. The header
    /// is updated once, after the last byte.
    pub fn write(&mut self, bytes: &[u8]) {
        let flags = self.cursor & !CURSOR_MASK;
        let mut position = self.cursor & CURSOR_MASK;
        let mut wrapped = false;
        // `open` kept the header and `size` body bytes in `region`.
        let body = self
            .region
            .get_mut(CbmemConsoleHeader::SIZE..)
            .unwrap_or_default();
        for &byte in bytes {
            // `open` checked position < size == body.len(), and it is kept so below.
            if let Some(slot) = body.get_mut(position as usize) {
                *slot = byte;
            }
            position += 1;
            if position >= self.size {
                position = 0;
                wrapped = true;
            }
        }
        self.cursor = flags | if wrapped { OVERFLOW } else { 0 } | position;
        let cursor_at = offset_of!(CbmemConsoleHeader, cursor);
        if let Some(field) = self.region.get_mut(cursor_at..cursor_at + 4) {
            field.copy_from_slice(&self.cursor.to_le_bytes());
        }
    }

    /// The text in order, oldest first: after a wrap the part from the position to the
    /// end, then the part before the position.
    pub fn contents(&self) -> (&[u8], &[u8]) {
        let body = self
            .region
            .get(CbmemConsoleHeader::SIZE..)
            .unwrap_or_default();
        // `open` checked position < size == body.len().
        let (before, after) = body
            .split_at_checked(self.position() as usize)
            .unwrap_or((body, &[]));
        if self.overflowed() {
            (after, before)
        } else {
            (before, &[])
        }
    }
}

impl fmt::Write for CbmemConsole<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

/// The first `N` bytes parkboot logs before it knows whether there is a CBMEM console,
/// so that they can be replayed into it: coreboot users expect parkboot's log to start
/// with its first line. What does not fit is counted, not kept.
pub struct EarlyLog<const N: usize> {
    bytes: [u8; N],
    len: usize,
    dropped: usize,
}

impl<const N: usize> EarlyLog<N> {
    pub const fn new() -> Self {
        EarlyLog {
            bytes: [0; N],
            len: 0,
            dropped: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let free = self.bytes.get_mut(self.len..).unwrap_or_default();
        let kept = bytes.len().min(free.len());
        for (to, &from) in free.iter_mut().zip(bytes) {
            *to = from;
        }
        self.len += kept;
        self.dropped = self.dropped.saturating_add(bytes.len() - kept);
    }

    /// What was kept, in order.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Bytes that did not fit.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Writes what was kept into `console`, then a note if some did not fit, and empties
    /// the log.
    pub fn replay_into(&mut self, console: &mut CbmemConsole) {
        console.write(self.as_bytes());
        if self.dropped > 0 {
            let _ = fmt::Write::write_fmt(
                console,
                format_args!(
                    "*** parkboot: {} bytes of its early log did not fit the {}-byte buffer ***\n",
                    self.dropped, N
                ),
            );
        }
        self.len = 0;
        self.dropped = 0;
    }
}

impl<const N: usize> Default for EarlyLog<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::memory::MemoryKind;
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    const ADDR: u64 = 0x7ffd_0000;

    fn region(size: u32, cursor: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 8 + size as usize];
        bytes[0..4].copy_from_slice(&size.to_le_bytes());
        bytes[4..8].copy_from_slice(&cursor.to_le_bytes());
        bytes[8..8 + body.len()].copy_from_slice(body);
        bytes
    }

    fn stored_cursor(bytes: &[u8]) -> u32 {
        u32::from_le_bytes(bytes[4..8].try_into().unwrap())
    }

    fn text(console: &CbmemConsole) -> String {
        let (first, second) = console.contents();
        let mut all = first.to_vec();
        all.extend_from_slice(second);
        String::from_utf8(all).unwrap()
    }

    #[test]
    fn appends_after_coreboots_text_and_stores_the_cursor() {
        let earlier = b"coreboot-4.15 ramstage\n";
        let mut bytes = region(64, earlier.len() as u32, earlier);
        let mut console = CbmemConsole::open(&mut bytes, ADDR).unwrap();
        assert_eq!(console.position(), earlier.len() as u32);
        console.write(b"parkboot\n");
        assert_eq!(text(&console), "coreboot-4.15 ramstage\nparkboot\n");
        assert!(!console.overflowed());
        let expected = (earlier.len() + 9) as u32;
        assert_eq!(console.cursor(), expected);
        assert_eq!(stored_cursor(&bytes), expected);
        assert_eq!(
            &bytes[8..8 + expected as usize],
            b"coreboot-4.15 ramstage\nparkboot\n"
        );
    }

    #[test]
    fn wraps_to_the_start_and_sets_overflow_like_cbmemc_tx_byte() {
        let mut bytes = region(8, 5, b"abcde");
        let mut console = CbmemConsole::open(&mut bytes, ADDR).unwrap();
        // Exactly to the end: position 0, and coreboot already sets the flag.
        console.write(b"fgh");
        assert_eq!(console.position(), 0);
        assert!(console.overflowed());
        assert_eq!(text(&console), "abcdefgh");
        console.write(b"XY");
        assert_eq!(console.cursor(), OVERFLOW | 2);
        assert_eq!(text(&console), "cdefghXY");
        assert_eq!(stored_cursor(&bytes), OVERFLOW | 2);
        assert_eq!(&bytes[8..], b"XYcdefgh");
    }

    #[test]
    fn writes_longer_than_the_ring_keep_the_newest_bytes() {
        let mut bytes = region(4, 0, b"");
        let mut console = CbmemConsole::open(&mut bytes, ADDR).unwrap();
        console.write(b"0123456789");
        assert_eq!(console.cursor(), OVERFLOW | 2);
        assert_eq!(text(&console), "6789");
    }

    #[test]
    fn overflow_and_reserved_flags_from_coreboot_are_kept() {
        let flags = OVERFLOW | (1 << 29);
        let mut bytes = region(6, flags | 3, b"DEFabc");
        let mut console = CbmemConsole::open(&mut bytes, ADDR).unwrap();
        assert!(console.overflowed());
        assert_eq!(text(&console), "abcDEF");
        console.write(b"g");
        assert_eq!(console.cursor(), flags | 4);
        assert_eq!(text(&console), "bcDEFg");
    }

    #[test]
    fn corrupt_headers_are_refused_by_name() {
        let mut zero = region(0, 0, b"");
        assert_eq!(
            CbmemConsole::open(&mut zero, ADDR).err(),
            Some(CbmemConsoleError::ZeroSize { addr: ADDR })
        );
        let mut past = region(16, 16, b"");
        assert_eq!(
            CbmemConsole::open(&mut past, ADDR).err(),
            Some(CbmemConsoleError::CursorPastEnd {
                addr: ADDR,
                cursor: 16,
                size: 16
            })
        );
        // The flag bits do not count towards the position.
        let mut flagged = region(16, OVERFLOW | 15, b"");
        assert!(CbmemConsole::open(&mut flagged, ADDR).is_ok());
        let mut huge = region(16, 0, b"");
        huge[0..4].copy_from_slice(&(MAX_BODY_SIZE + 1).to_le_bytes());
        assert_eq!(
            CbmemConsole::open(&mut huge, ADDR).err(),
            Some(CbmemConsoleError::SizeTooLarge {
                addr: ADDR,
                size: MAX_BODY_SIZE + 1
            })
        );
        let mut long = region(16, 0, b"");
        long[0..4].copy_from_slice(&17u32.to_le_bytes());
        assert_eq!(
            CbmemConsole::open(&mut long, ADDR).err(),
            Some(CbmemConsoleError::SizePastRegion {
                addr: ADDR,
                size: 17,
                region_bytes: 24
            })
        );
        let mut short = [0u8; 7];
        assert_eq!(
            CbmemConsole::open(&mut short, ADDR).err(),
            Some(CbmemConsoleError::RegionTooSmall {
                addr: ADDR,
                region_bytes: 7
            })
        );
        let message = CbmemConsoleError::CursorPastEnd {
            addr: ADDR,
            cursor: OVERFLOW | 0x20,
            size: 0x10,
        }
        .to_string();
        assert_eq!(
            message,
            "CBMEM console at 0x7ffd0000: cursor 0x80000020 (position 0x20) is not below size 0x10"
        );
    }

    #[test]
    fn create_makes_an_empty_console() {
        let mut bytes = vec![0xaau8; 8 + 32];
        let mut console = CbmemConsole::create(&mut bytes, ADDR).unwrap();
        assert_eq!(console.size(), 32);
        assert_eq!(console.cursor(), 0);
        console.write(b"hi");
        assert_eq!(&bytes[0..8], &[32, 0, 0, 0, 2, 0, 0, 0]);
        let mut tiny = [0u8; 4];
        assert!(matches!(
            CbmemConsole::create(&mut tiny, ADDR),
            Err(CbmemConsoleError::RegionTooSmall { .. })
        ));
    }

    #[test]
    fn placement_must_be_firmware_memory() {
        let map = [
            MemoryRegion {
                start: 0,
                size: 0x7ff0_0000,
                kind: MemoryKind::Usable,
            },
            MemoryRegion {
                start: 0x7ff0_0000,
                size: 0x10_0000,
                kind: MemoryKind::CorebootTables,
            },
        ];
        assert_eq!(check_placement(&map, 0x7ffd_0000, 0x2_0008), Ok(()));
        // Starts in free RAM.
        assert_eq!(
            check_placement(&map, 0x7fef_f000, 0x2000),
            Err(CbmemConsoleError::NotFirmwareMemory {
                addr: 0x7fef_f000,
                end: 0x7ff0_1000
            })
        );
        // Runs past the end of the map.
        assert!(check_placement(&map, 0x7fff_f000, 0x2000).is_err());
        // Entirely in free RAM.
        assert!(check_placement(&map, 0x1000, 0x100).is_err());
        // A firmware range laid over free RAM (as cbshim's map does) wins, as it does
        // in parkboot's memory map.
        let overlapping = [
            MemoryRegion {
                start: 0x10_0000,
                size: 0x1000_0000,
                kind: MemoryKind::Usable,
            },
            MemoryRegion {
                start: 0x200_0000,
                size: 0x7_4000,
                kind: MemoryKind::CorebootTables,
            },
        ];
        assert_eq!(check_placement(&overlapping, 0x204_f000, 0x2_0000), Ok(()));
        assert!(check_placement(&overlapping, 0x206_0000, 0x2_0000).is_err());
    }

    #[test]
    fn early_log_keeps_the_first_bytes_and_replays_them_with_a_note() {
        let mut early: EarlyLog<8> = EarlyLog::new();
        early.push(b"first\n");
        early.push(b"second\n");
        assert_eq!(early.as_bytes(), b"first\nse");
        assert_eq!(early.dropped(), 5);
        let mut bytes = region(128, 4, b"cb:\n");
        let mut console = CbmemConsole::open(&mut bytes, ADDR).unwrap();
        early.replay_into(&mut console);
        assert_eq!(
            text(&console),
            "cb:\nfirst\nse*** parkboot: 5 bytes of its early log did not fit the 8-byte buffer ***\n"
        );
        assert!(early.as_bytes().is_empty());
        assert_eq!(early.dropped(), 0);
    }
}
