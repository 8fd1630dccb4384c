//! LZ4 files as cbfstool writes them: one LZ4 frame (the frame format of
//! lz4's `doc/lz4_Frame_format.md`), parsed here; the blocks are decoded by `lz4_flex`
//! straight into the caller's buffer, so LZ4 needs no heap.
//!
//! Like coreboot's own `ulz4fn`, the header checksum, block checksums and content
//! checksum are skipped, not verified (CBFS has its own hash attribute for that).

use super::DecodeError;

const FRAME_MAGIC: u32 = 0x184d_2204;
/// FLG: version (bits 7-6, must be 01), block independence, block checksum, content
/// size, content checksum, reserved (bit 1, must be 0), dictionary ID.
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_BLOCK_INDEPENDENCE: u8 = 1 << 5;
const FLG_BLOCK_CHECKSUM: u8 = 1 << 4;
const FLG_CONTENT_SIZE: u8 = 1 << 3;
const FLG_CONTENT_CHECKSUM: u8 = 1 << 2;
const FLG_RESERVED: u8 = 1 << 1;
const FLG_DICTIONARY_ID: u8 = 1 << 0;
/// BD: block maximum size code in bits 6-4 (4 = 64 KiB ... 7 = 4 MiB); others reserved.
const BD_BLOCK_SIZE_SHIFT: u8 = 4;
const BD_BLOCK_SIZE_MASK: u8 = 0b0111_0000;
/// A block size word with this bit set holds the block uncompressed.
const BLOCK_UNCOMPRESSED: u32 = 1 << 31;
const CHECKSUM_SIZE: usize = 4;

/// A cursor over the frame that reports where it ran out.
struct Frame<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Frame<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let taken = self
            .at
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or(DecodeError::Lz4 {
                what,
                at: self.at as u64,
            })?;
        self.at += n;
        Ok(taken)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let at = self.at;
        self.take(N, what)?
            .try_into()
            .map_err(|_| DecodeError::Lz4 {
                what,
                at: at as u64,
            })
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn error(&self, what: &'static str) -> DecodeError {
        DecodeError::Lz4 {
            what,
            at: self.at as u64,
        }
    }
}

/// Decodes the frame in `stream` into all of `out`, whose length is the decompressed
/// size the compression attribute gives; returns the bytes written.
pub(super) fn decode(stream: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let mut frame = Frame {
        bytes: stream,
        at: 0,
    };
    if frame.u32("the frame ends in its magic")? != FRAME_MAGIC {
        frame.at = 0;
        return Err(frame.error("not an LZ4 frame (magic is not 0x184d2204)"));
    }
    let [flags, block_descriptor] = frame.array("the frame ends in its descriptor")?;
    if flags & FLG_VERSION_MASK != FLG_VERSION_01 || flags & FLG_RESERVED != 0 {
        frame.at -= 2;
        return Err(frame.error("unknown frame version or reserved flag set"));
    }
    let block_size_code = (block_descriptor & BD_BLOCK_SIZE_MASK) >> BD_BLOCK_SIZE_SHIFT;
    if !(4..=7).contains(&block_size_code) || block_descriptor & !BD_BLOCK_SIZE_MASK != 0 {
        frame.at -= 1;
        return Err(frame.error("bad block maximum size"));
    }
    let block_max = 1usize << (8 + 2 * block_size_code);
    if flags & FLG_CONTENT_SIZE != 0 {
        let size = frame.array("the frame ends in its content size")?;
        if u64::from_le_bytes(size) != out.len() as u64 {
            frame.at -= 8;
            return Err(
                frame.error("the frame's content size differs from the compression attribute's")
            );
        }
    }
    if flags & FLG_DICTIONARY_ID != 0 {
        return Err(frame.error("the frame needs a dictionary"));
    }
    frame.take(1, "the frame ends in its header checksum")?;

    let mut written = 0;
    loop {
        let word = frame.u32("the frame ends before its end mark")?;
        if word == 0 {
            break;
        }
        let len = (word & !BLOCK_UNCOMPRESSED) as usize;
        if len > block_max {
            frame.at -= 4;
            return Err(frame.error("block larger than the frame's block maximum size"));
        }
        let block_at = frame.at;
        let block = frame.take(len, "a block runs past the end of the data")?;
        let (history, rest) = out.split_at_mut(written);
        let decoded = if word & BLOCK_UNCOMPRESSED != 0 {
            let target = rest.get_mut(..len).ok_or(DecodeError::Lz4 {
                what: "more data than the decompressed size",
                at: block_at as u64,
            })?;
            target.copy_from_slice(block);
            Ok(len)
        } else if flags & FLG_BLOCK_INDEPENDENCE != 0 {
            lz4_flex::block::decompress_into(block, rest)
        } else {
            lz4_flex::block::decompress_into_with_dict(block, rest, history)
        };
        written += decoded.map_err(|e| DecodeError::Lz4 {
            what: match e {
                lz4_flex::block::DecompressError::OutputTooSmall { .. } => {
                    "more data than the decompressed size"
                }
                lz4_flex::block::DecompressError::LiteralOutOfBounds => {
                    "a literal run past the end of the block"
                }
                lz4_flex::block::DecompressError::ExpectedAnotherByte => "the block ends early",
                lz4_flex::block::DecompressError::OffsetZero => "a match with offset 0",
                lz4_flex::block::DecompressError::OffsetOutOfBounds => {
                    "a match before the start of the data"
                }
                _ => "bad block",
            },
            at: block_at as u64,
        })?;
        if flags & FLG_BLOCK_CHECKSUM != 0 {
            frame.take(CHECKSUM_SIZE, "the frame ends in a block checksum")?;
        }
    }
    if flags & FLG_CONTENT_CHECKSUM != 0 {
        frame.take(CHECKSUM_SIZE, "the frame ends in its content checksum")?;
    }
    Ok(written)
}
