//! Gzip (RFC 1952) for kernels shipped compressed (Debian ships Xen as `xen-*.gz`):
//! [`inflated_size`] checks a whole member in a first pass that keeps no output and says
//! how large it inflates; [`inflate`] then unpacks it into a buffer of that size,
//! checking its CRC32 and size again. No buffer is ever sized from the trailer alone.
//! Inflating is `miniz_oxide`'s; the header, the trailer and CRC32 are read here.
//! Bad input gives a [`GzipError`] that says what is wrong and where, never a panic.

use core::fmt;
use core::mem::{offset_of, size_of};

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use crate::memory::{FOUR_GIB, GIB};
use crate::wire::{wire_struct, WireField};

/// Why gzip data cannot be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GzipError {
    /// The first two bytes are not 1f 8b.
    BadMagic,
    /// A compression method other than deflate.
    Method { method: u8 },
    /// Reserved flag bits set (RFC 1952 says to refuse).
    ReservedFlags { flags: u8 },
    /// The data ends inside `what`.
    Truncated { what: &'static str },
    /// The deflate stream runs to the end of the data (`len` bytes) without its
    /// Last block: the data is cut short or corrupt.
    StreamUnfinished { len: usize },
    /// The data inflates to more than [`GZIP_MAX_INFLATED`] bytes.
    TooLarge { limit: u64 },
    /// The header CRC16 (FHCRC) does not match.
    HeaderCrc { stored: u16, computed: u16 },
    /// The deflate stream is damaged at this byte of the gzip data.
    Corrupt { at: usize },
    /// The inflated data's CRC32 differs from the trailer's.
    CrcMismatch { stored: u32, computed: u32 },
    /// The inflated size differs from the trailer's ISIZE.
    SizeMismatch { stored: u32, actual: u64 },
    /// The data inflates to more than the output buffer holds (size the buffer
    /// With [`inflated_size`]).
    OutputTooSmall { available: usize },
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
        GzipError::BadMagic => write!(f, "not gzip data: the first bytes are not 1f 8b"),
        GzipError::Method { method } => write!(
            f,
            "gzip compression method {method} is not deflate (8)"
        ),
        GzipError::ReservedFlags { flags } => write!(
            f,
            "gzip header flags 0x{flags:02x} have reserved bits set"
        ),
        GzipError::Truncated { what } => write!(f, "gzip data truncated in the {what}"),
        GzipError::HeaderCrc { stored, computed } => write!(
            f,
            "gzip header CRC 0x{stored:04x} does not match the header (0x{computed:04x})"
        ),
        GzipError::StreamUnfinished { len } => write!(
            f,
            "gzip data corrupt or truncated: the deflate stream runs to the end of the {len} bytes without its last block"
        ),
        GzipError::TooLarge { limit } => write!(
            f,
            "gzip data inflates to more than {limit} bytes, more than any kernel parkboot boots"
        ),
        GzipError::Corrupt { at } => write!(f, "gzip data corrupt at byte {at}"),
        GzipError::CrcMismatch { stored, computed } => write!(
            f,
            "gzip data corrupt: CRC mismatch: the trailer says 0x{stored:08x}, the inflated data has \
             0x{computed:08x}"
        ),
        GzipError::SizeMismatch { stored, actual } => write!(
            f,
            "gzip data corrupt: the stream inflates to {actual} bytes, the trailer's ISIZE says {stored}"
        ),
        GzipError::OutputTooSmall { available } => write!(
            f,
            "gzip data inflates to more than the {available}-byte output buffer"
        ),
        }
    }
}

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
// Evaluated by the compiler: an index out of range fails the build, not a boot.
#[allow(clippy::indexing_slicing)]
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
pub const GZIP_MAX_INFLATED: u64 = GIB;

/// The deflate window (RFC 1951: back-references reach at most 32 KiB). The counting
/// pass inflates into a wrapping buffer of this size and keeps nothing else.
const DEFLATE_WINDOW: usize = 32 * 1024;

/// Checks a whole gzip member in a first pass that keeps no output, and returns the
/// number of bytes it inflates to: the size of buffer [`inflate`] needs.
///
/// The size comes from the stream, not from the trailer: the deflate stream must end
/// with its last block, and the trailer after it must agree with what the stream
/// produced (CRC32 and ISIZE). A cut or corrupted file is refused here, before any
/// memory is sized from it. Stack use: the deflate state (about 11 KiB) and the 32 KiB
/// window.
pub fn inflated_size(compressed: &[u8]) -> Result<usize, GzipError> {
    let body_start = gzip_body_start(compressed)?;
    let body = compressed
        .get(body_start..)
        .ok_or(GzipError::Truncated { what: "header" })?;
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
            return Err(GzipError::TooLarge {
                limit: GZIP_MAX_INFLATED,
            });
        }
        match status {
            TINFLStatus::Done => break,
            TINFLStatus::HasMoreOutput => {}
            TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
                return Err(GzipError::StreamUnfinished {
                    len: compressed.len(),
                })
            }
            _ => {
                return Err(GzipError::Corrupt {
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
) -> Result<(), GzipError> {
    let trailer =
        GzipTrailer::read_at(compressed, at).ok_or(GzipError::Truncated { what: "trailer" })?;
    if computed != trailer.crc32 {
        return Err(GzipError::CrcMismatch {
            stored: trailer.crc32,
            computed,
        });
    }
    // ISIZE is the size mod 2^32.
    if inflated as u32 != trailer.isize || inflated >= FOUR_GIB {
        return Err(GzipError::SizeMismatch {
            stored: trailer.isize,
            actual: inflated,
        });
    }
    Ok(())
}

/// Parses a gzip member header; returns the offset of the deflate stream.
fn gzip_body_start(bytes: &[u8]) -> Result<usize, GzipError> {
    if !is_gzip(bytes) {
        return Err(GzipError::BadMagic);
    }
    let header = GzipHeader::read_at(bytes, 0).ok_or(GzipError::Truncated { what: "header" })?;
    if header.method != GZIP_METHOD_DEFLATE {
        return Err(GzipError::Method {
            method: header.method,
        });
    }
    if header.flags & !GZIP_FLAGS_KNOWN != 0 {
        return Err(GzipError::ReservedFlags {
            flags: header.flags,
        });
    }
    let mut pos = GZIP_HEADER_BYTES;
    if header.flags & GZIP_FEXTRA != 0 {
        let truncated = GzipError::Truncated {
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
            let truncated = GzipError::Truncated { what };
            let rest = bytes.get(pos..).ok_or(truncated)?;
            let nul = rest.iter().position(|&b| b == 0).ok_or(truncated)?;
            pos += nul + 1;
        }
    }
    if header.flags & GZIP_FHCRC != 0 {
        let stored = u16::read_at(bytes, pos).ok_or(GzipError::Truncated { what: "header CRC" })?;
        let computed = crc32(bytes.get(..pos).unwrap_or(&[])) as u16;
        if stored != computed {
            return Err(GzipError::HeaderCrc { stored, computed });
        }
        pos += size_of::<u16>();
    }
    Ok(pos)
}

/// Inflates one gzip member (RFC 1952) into `out`, without allocating, and checks its
/// CRC32 and size. Returns the number of bytes written. Use [`inflated_size`] to
/// size `out`.
///
/// The deflate state (about 11 KiB) lives on the stack; parkboot's boot stack is
/// large enough.
pub fn inflate(compressed: &[u8], out: &mut [u8]) -> Result<usize, GzipError> {
    let body_start = gzip_body_start(compressed)?;
    let body = compressed
        .get(body_start..)
        .ok_or(GzipError::Truncated { what: "header" })?;
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
            return Err(GzipError::OutputTooSmall {
                available: out.len(),
            })
        }
        TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
            return Err(GzipError::StreamUnfinished {
                len: compressed.len(),
            })
        }
        _ => return Err(GzipError::Corrupt { at }),
    }
    let inflated = out.get(..written).unwrap_or(&[]);
    check_gzip_trailer(compressed, at, crc32(inflated), written as u64)?;
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests;
