//! LZMA files as cbfstool writes them (coreboot's `util/cbfstool/lzma`): 5 property
//! bytes (the lc/lp/pb byte and the little-endian dictionary size), the 8-byte
//! little-endian decompressed size, then the raw LZMA stream.
//!
//! Written by hand, after the LZMA specification's reference decoder (`LzmaSpec.cpp`
//! in the LZMA SDK, public domain), because it decodes straight into the caller's
//! buffer: that buffer is the whole file, so it is also the LZMA window, and decoding
//! needs nothing but its probability tables (under 32 KiB) on the stack. The `no_std`
//! crates (`lzma-rust2`) need `alloc` and keep a window of their own that grows with
//! the output (cbfstool sets the dictionary to the file's size), so a kernel would need
//! a heap as big as itself, and `alloc` in this library would force a global allocator
//! on every binary that links it.
//!
//! Every input read and every match copy is checked: a bad stream is a
//! [`DecodeError::Lzma`], never a panic or a read outside `stream` or `out`.

use super::DecodeError;

/// Bytes before the raw stream: properties byte, dictionary size, decompressed size.
const HEADER_SIZE: usize = 13;
const DICT_SIZE_AT: usize = 1;
const SIZE_AT: usize = 5;
/// A decompressed size of all ones: unknown, the stream ends with an end marker.
const SIZE_UNKNOWN: u64 = u64::MAX;
/// The decoder's smallest dictionary.
const MIN_DICT_SIZE: u32 = 1 << 12;

/// Most literal context plus literal position bits this decoder keeps tables for
/// (LZMA2's limit too; cbfstool writes lc=1, lp=0, pb=0).
pub const MAX_LC_PLUS_LP: u32 = 4;

const NUM_BIT_MODEL_TOTAL_BITS: u32 = 11;
const BIT_MODEL_TOTAL: u16 = 1 << NUM_BIT_MODEL_TOTAL_BITS;
const NUM_MOVE_BITS: u32 = 5;
const PROB_INIT: u16 = BIT_MODEL_TOTAL / 2;
const TOP_VALUE: u32 = 1 << 24;

const NUM_STATES: usize = 12;
const NUM_POS_BITS_MAX: usize = 4;
const NUM_LEN_TO_POS_STATES: usize = 4;
const NUM_ALIGN_BITS: u32 = 4;
const START_POS_MODEL_INDEX: u32 = 4;
const END_POS_MODEL_INDEX: u32 = 14;
const NUM_FULL_DISTANCES: usize = 1 << (END_POS_MODEL_INDEX >> 1);
const NUM_POS_SLOT_BITS: u32 = 6;
const MATCH_MIN_LEN: usize = 2;
const LITERAL_CODER_SIZE: usize = 0x300;
const END_MARKER_DISTANCE: u32 = 0xffff_ffff;

/// Why a stream was refused, and how much output came before.
struct Fault {
    what: &'static str,
}

const TRUNCATED: Fault = Fault {
    what: "the stream ends early",
};

/// A probability or output index outside its table: the bounds of every index follow
/// from the model's sizes, so this names a decoder bug rather than a bad stream; it is
/// checked (as indexing would be) so that no stream can make the decoder panic.
const OUT_OF_TABLE: Fault = Fault {
    what: "an index outside the decoder's tables",
};

/// The probability `index` of `probs`.
fn prob(probs: &mut [u16], index: usize) -> Result<&mut u16, Fault> {
    probs.get_mut(index).ok_or(OUT_OF_TABLE)
}

struct RangeDecoder<'a> {
    input: &'a [u8],
    at: usize,
    range: u32,
    code: u32,
}

impl<'a> RangeDecoder<'a> {
    fn new(input: &'a [u8]) -> Result<Self, Fault> {
        let mut rc = RangeDecoder {
            input,
            at: 0,
            range: 0xffff_ffff,
            code: 0,
        };
        let first = rc.byte()?;
        for _ in 0..4 {
            rc.code = (rc.code << 8) | u32::from(rc.byte()?);
        }
        if first != 0 || rc.code == rc.range {
            return Err(Fault {
                what: "the range coder's first bytes are invalid",
            });
        }
        Ok(rc)
    }

    fn byte(&mut self) -> Result<u8, Fault> {
        let b = *self.input.get(self.at).ok_or(TRUNCATED)?;
        self.at += 1;
        Ok(b)
    }

    // Kept inlined into `bit`: out of line (as opt-level "s" chose once the bounds
    // checks became errors) it cost the decoder 25% more instructions.
    #[inline(always)]
    fn normalize(&mut self) -> Result<(), Fault> {
        if self.range < TOP_VALUE {
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(self.byte()?);
        }
        Ok(())
    }

    fn bit(&mut self, prob: &mut u16) -> Result<u32, Fault> {
        let bound = (self.range >> NUM_BIT_MODEL_TOTAL_BITS) * u32::from(*prob);
        let bit = if self.code < bound {
            *prob += (BIT_MODEL_TOTAL - *prob) >> NUM_MOVE_BITS;
            self.range = bound;
            0
        } else {
            *prob -= *prob >> NUM_MOVE_BITS;
            self.code -= bound;
            self.range -= bound;
            1
        };
        self.normalize()?;
        Ok(bit)
    }

    fn direct_bits(&mut self, count: u32) -> Result<u32, Fault> {
        let mut result = 0u32;
        for _ in 0..count {
            self.range >>= 1;
            self.code = self.code.wrapping_sub(self.range);
            let t = 0u32.wrapping_sub(self.code >> 31);
            self.code = self.code.wrapping_add(self.range & t);
            if self.code == self.range {
                return Err(Fault {
                    what: "corrupt direct bits",
                });
            }
            self.normalize()?;
            result = (result << 1).wrapping_add(t.wrapping_add(1));
        }
        Ok(result)
    }

    /// A `bits`-bit symbol from the bit tree `probs` (1-based, `1 << bits` entries).
    fn tree(&mut self, probs: &mut [u16], bits: u32) -> Result<u32, Fault> {
        // The hot loop: one bounds check here instead of one per bit.
        if probs.len() < 1 << bits {
            return Err(OUT_OF_TABLE);
        }
        let mut m = 1usize;
        for _ in 0..bits {
            // SAFETY: before step k, `m` is below `2 << k`, so below `1 << bits`,
            // which `probs.len()` is not below (checked above).
            let prob = unsafe { probs.get_unchecked_mut(m) };
            m = (m << 1) + self.bit(prob)? as usize;
        }
        Ok(m as u32 - (1 << bits))
    }

    /// Like [`RangeDecoder::tree`] with the bits least significant first.
    fn reverse_tree(&mut self, probs: &mut [u16], bits: u32) -> Result<u32, Fault> {
        if probs.len() < 1 << bits {
            return Err(OUT_OF_TABLE);
        }
        let mut m = 1usize;
        let mut symbol = 0;
        for i in 0..bits {
            // SAFETY: as in `tree`, `m` is below `1 << bits` <= `probs.len()`.
            let bit = self.bit(unsafe { probs.get_unchecked_mut(m) })?;
            m = (m << 1) + bit as usize;
            symbol |= bit << i;
        }
        Ok(symbol)
    }
}

struct LenDecoder {
    choice: u16,
    choice2: u16,
    low: [[u16; 1 << 3]; 1 << NUM_POS_BITS_MAX],
    mid: [[u16; 1 << 3]; 1 << NUM_POS_BITS_MAX],
    high: [u16; 1 << 8],
}

impl LenDecoder {
    const fn new() -> Self {
        LenDecoder {
            choice: PROB_INIT,
            choice2: PROB_INIT,
            low: [[PROB_INIT; 1 << 3]; 1 << NUM_POS_BITS_MAX],
            mid: [[PROB_INIT; 1 << 3]; 1 << NUM_POS_BITS_MAX],
            high: [PROB_INIT; 1 << 8],
        }
    }

    /// The match length minus [`MATCH_MIN_LEN`] (0..=271).
    fn decode(&mut self, rc: &mut RangeDecoder, pos_state: usize) -> Result<u32, Fault> {
        if rc.bit(&mut self.choice)? == 0 {
            let low = self.low.get_mut(pos_state).ok_or(OUT_OF_TABLE)?;
            return rc.tree(low, 3);
        }
        if rc.bit(&mut self.choice2)? == 0 {
            let mid = self.mid.get_mut(pos_state).ok_or(OUT_OF_TABLE)?;
            return Ok(8 + rc.tree(mid, 3)?);
        }
        Ok(16 + rc.tree(&mut self.high, 8)?)
    }
}

/// Every probability of the LZMA model.
struct Model {
    literal: [u16; LITERAL_CODER_SIZE << MAX_LC_PLUS_LP],
    is_match: [u16; NUM_STATES << NUM_POS_BITS_MAX],
    is_rep: [u16; NUM_STATES],
    is_rep_g0: [u16; NUM_STATES],
    is_rep_g1: [u16; NUM_STATES],
    is_rep_g2: [u16; NUM_STATES],
    is_rep0_long: [u16; NUM_STATES << NUM_POS_BITS_MAX],
    pos_slot: [[u16; 1 << NUM_POS_SLOT_BITS]; NUM_LEN_TO_POS_STATES],
    pos: [u16; 1 + NUM_FULL_DISTANCES - END_POS_MODEL_INDEX as usize],
    align: [u16; 1 << NUM_ALIGN_BITS],
    len: LenDecoder,
    rep_len: LenDecoder,
}

/// The tables live on the stack (parkboot's boot stack is 256 KiB).
const _: () = assert!(core::mem::size_of::<Model>() < 32 * 1024);
// The literal loop indexes up to `(2 << 8) + 0xff` in one coder.
const _: () = assert!(LITERAL_CODER_SIZE == 0x300);

impl Model {
    fn new() -> Self {
        Model {
            literal: [PROB_INIT; LITERAL_CODER_SIZE << MAX_LC_PLUS_LP],
            is_match: [PROB_INIT; NUM_STATES << NUM_POS_BITS_MAX],
            is_rep: [PROB_INIT; NUM_STATES],
            is_rep_g0: [PROB_INIT; NUM_STATES],
            is_rep_g1: [PROB_INIT; NUM_STATES],
            is_rep_g2: [PROB_INIT; NUM_STATES],
            is_rep0_long: [PROB_INIT; NUM_STATES << NUM_POS_BITS_MAX],
            pos_slot: [[PROB_INIT; 1 << NUM_POS_SLOT_BITS]; NUM_LEN_TO_POS_STATES],
            pos: [PROB_INIT; 1 + NUM_FULL_DISTANCES - END_POS_MODEL_INDEX as usize],
            align: [PROB_INIT; 1 << NUM_ALIGN_BITS],
            len: LenDecoder::new(),
            rep_len: LenDecoder::new(),
        }
    }

    /// The distance of a new match minus one; `len` is its length minus two.
    fn distance(&mut self, rc: &mut RangeDecoder, len: u32) -> Result<u32, Fault> {
        let len_state = (len as usize).min(NUM_LEN_TO_POS_STATES - 1);
        let pos_slot = self.pos_slot.get_mut(len_state).ok_or(OUT_OF_TABLE)?;
        let slot = rc.tree(pos_slot, NUM_POS_SLOT_BITS)?;
        if slot < START_POS_MODEL_INDEX {
            return Ok(slot);
        }
        let direct = (slot >> 1) - 1;
        let mut distance = (2 | (slot & 1)) << direct;
        if slot < END_POS_MODEL_INDEX {
            let base = (distance - slot) as usize;
            let pos = self.pos.get_mut(base..).ok_or(OUT_OF_TABLE)?;
            distance += rc.reverse_tree(pos, direct)?;
        } else {
            distance += rc.direct_bits(direct - NUM_ALIGN_BITS)? << NUM_ALIGN_BITS;
            distance += rc.reverse_tree(&mut self.align, NUM_ALIGN_BITS)?;
        }
        Ok(distance)
    }
}

/// Decodes `stream` into all of `out`, whose length is the decompressed size the
/// compression attribute gives; returns the bytes written (fewer only when the stream
/// has an end marker before that).
pub(super) fn decode(stream: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    let mut written = 0;
    decode_stream(stream, out, &mut written).map_err(|fault| DecodeError::Lzma {
        what: fault.what,
        decoded: written as u64,
    })?;
    Ok(written)
}

fn decode_stream(stream: &[u8], out: &mut [u8], pos: &mut usize) -> Result<(), Fault> {
    let (header, raw_stream) = stream.split_first_chunk::<HEADER_SIZE>().ok_or(Fault {
        what: "shorter than the 13-byte LZMA header",
    })?;
    let mut props = header[0];
    let mut dict_bytes = [0; 4];
    dict_bytes.copy_from_slice(&header[DICT_SIZE_AT..SIZE_AT]);
    let dict_size = u32::from_le_bytes(dict_bytes).max(MIN_DICT_SIZE);
    let mut size_bytes = [0; 8];
    size_bytes.copy_from_slice(&header[SIZE_AT..HEADER_SIZE]);
    let header_size = u64::from_le_bytes(size_bytes);
    if header_size != SIZE_UNKNOWN && header_size != out.len() as u64 {
        return Err(Fault {
            what: "the LZMA header's size differs from the compression attribute's",
        });
    }
    if props >= 9 * 5 * 5 {
        return Err(Fault {
            what: "invalid properties byte",
        });
    }
    let lc = u32::from(props % 9);
    props /= 9;
    let lp = u32::from(props % 5);
    let pb = u32::from(props / 5);
    if lc + lp > MAX_LC_PLUS_LP {
        return Err(Fault {
            what: "lc + lp above 4 is not supported (cbfstool writes lc=1, lp=0)",
        });
    }
    let pb_mask = (1usize << pb) - 1;
    let lp_mask = (1usize << lp) - 1;

    let mut rc = RangeDecoder::new(raw_stream)?;
    let mut model = Model::new();
    let mut state = 0usize;
    let mut reps = [0u32; 4];

    while *pos < out.len() {
        let pos_state = *pos & pb_mask;
        let is_match = prob(&mut model.is_match, (state << NUM_POS_BITS_MAX) + pos_state)?;
        if rc.bit(is_match)? == 0 {
            // A literal.
            let previous = match pos.checked_sub(1) {
                Some(at) => *out.get(at).ok_or(OUT_OF_TABLE)?,
                None => 0,
            };
            let lit_state = ((*pos & lp_mask) << lc) + (usize::from(previous) >> (8 - lc));
            // The hot loop: one bounds check here, none per bit below.
            let probs = model
                .literal
                .get_mut(LITERAL_CODER_SIZE * lit_state..)
                .and_then(|probs| probs.first_chunk_mut::<LITERAL_CODER_SIZE>())
                .ok_or(OUT_OF_TABLE)?;
            let mut symbol = 1usize;
            if state >= 7 {
                let mut match_byte = match_source(out, *pos, reps[0])?;
                while symbol < 0x100 {
                    let match_bit = usize::from((match_byte >> 7) & 1);
                    match_byte <<= 1;
                    // SAFETY: `symbol` < 0x100 and `match_bit` <= 1, so the index is
                    // below 0x300 == LITERAL_CODER_SIZE == `probs.len()`.
                    let prob = unsafe { probs.get_unchecked_mut(((1 + match_bit) << 8) + symbol) };
                    let bit = rc.bit(prob)? as usize;
                    symbol = (symbol << 1) | bit;
                    if match_bit != bit {
                        break;
                    }
                }
            }
            while symbol < 0x100 {
                // SAFETY: `symbol` < 0x100 < LITERAL_CODER_SIZE == `probs.len()`.
                let prob = unsafe { probs.get_unchecked_mut(symbol) };
                symbol = (symbol << 1) | rc.bit(prob)? as usize;
            }
            *out.get_mut(*pos).ok_or(OUT_OF_TABLE)? = (symbol - 0x100) as u8;
            *pos += 1;
            state = match state {
                0..=3 => 0,
                4..=9 => state - 3,
                _ => state - 6,
            };
            continue;
        }
        let len;
        if rc.bit(prob(&mut model.is_rep, state)?)? != 0 {
            if *pos == 0 {
                return Err(Fault {
                    what: "a repeated match before any data",
                });
            }
            if rc.bit(prob(&mut model.is_rep_g0, state)?)? == 0 {
                let rep0_long = (state << NUM_POS_BITS_MAX) + pos_state;
                if rc.bit(prob(&mut model.is_rep0_long, rep0_long)?)? == 0 {
                    // A "short rep": one byte from distance rep0.
                    state = if state < 7 { 9 } else { 11 };
                    let byte = match_source(out, *pos, reps[0])?;
                    *out.get_mut(*pos).ok_or(OUT_OF_TABLE)? = byte;
                    *pos += 1;
                    continue;
                }
            } else {
                let distance;
                if rc.bit(prob(&mut model.is_rep_g1, state)?)? == 0 {
                    distance = reps[1];
                } else {
                    if rc.bit(prob(&mut model.is_rep_g2, state)?)? == 0 {
                        distance = reps[2];
                    } else {
                        distance = reps[3];
                        reps[3] = reps[2];
                    }
                    reps[2] = reps[1];
                }
                reps[1] = reps[0];
                reps[0] = distance;
            }
            len = model.rep_len.decode(&mut rc, pos_state)?;
            state = if state < 7 { 8 } else { 11 };
        } else {
            reps[3] = reps[2];
            reps[2] = reps[1];
            reps[1] = reps[0];
            len = model.len.decode(&mut rc, pos_state)?;
            state = if state < 7 { 7 } else { 10 };
            reps[0] = model.distance(&mut rc, len)?;
            if reps[0] == END_MARKER_DISTANCE {
                // The end marker: the caller compares what was written with the size.
                return Ok(());
            }
            if reps[0] >= dict_size {
                return Err(Fault {
                    what: "a match farther back than the dictionary",
                });
            }
        }
        let len = len as usize + MATCH_MIN_LEN;
        let distance = reps[0] as usize + 1;
        if distance > *pos {
            return Err(Fault {
                what: "a match before the start of the data",
            });
        }
        if len > out.len() - *pos {
            return Err(Fault {
                what: "a match past the decompressed size",
            });
        }
        // Byte by byte: the source may overlap what the match writes. One bounds check
        // per match (the window, repeating the two checks above), none per byte.
        let window = out
            .get_mut(*pos - distance..*pos + len)
            .ok_or(OUT_OF_TABLE)?;
        for i in 0..len {
            // SAFETY: `i` < `len` and `distance + i` < `distance + len` == `window.len()`.
            unsafe { *window.get_unchecked_mut(distance + i) = *window.get_unchecked(i) };
        }
        *pos += len;
    }
    Ok(())
}

/// The byte `rep0 + 1` back from `pos`.
fn match_source(out: &[u8], pos: usize, rep0: u32) -> Result<u8, Fault> {
    (rep0 as usize)
        .checked_add(1)
        .and_then(|distance| pos.checked_sub(distance))
        .and_then(|at| out.get(at).copied())
        .ok_or(Fault {
            what: "a match before the start of the data",
        })
}
