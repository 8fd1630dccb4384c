//! Reading a CBMEM console back from guest memory, independently of parkboot's writer
//! (size, cursor with its 28-bit position and overflow flag, ring order), and the
//! serial lines it is compared with.

use crate::Outcome;

/// `struct cbmem_console`: u32 size, u32 cursor, then the body.
pub const HEADER_BYTES: usize = 8;
pub const CURSOR_MASK: u32 = (1 << 28) - 1;
pub const OVERFLOW: u32 = 1 << 31;

/// The text of a CBMEM console (header and body), oldest first, as coreboot's readers
/// decode it.
pub fn decode(console: &[u8]) -> Result<String, String> {
    let word = |at: usize| u32::from_le_bytes(console[at..at + 4].try_into().unwrap());
    if console.len() < HEADER_BYTES {
        return Err(format!("{} bytes: no header", console.len()));
    }
    let (size, cursor) = (word(0) as usize, word(4));
    let position = (cursor & CURSOR_MASK) as usize;
    let body = console
        .get(HEADER_BYTES..HEADER_BYTES + size)
        .ok_or(format!(
            "size {size:#x} past the {} bytes read",
            console.len()
        ))?;
    if position >= size {
        return Err(format!("cursor {cursor:#x} not below size {size:#x}"));
    }
    let mut text = Vec::new();
    if cursor & OVERFLOW != 0 {
        text.extend_from_slice(&body[position..]);
    }
    text.extend_from_slice(&body[..position]);
    String::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))
}

/// `(address, size)` from parkboot's "CBMEM console at 0x..., N bytes" line.
pub fn console_from_line(line: &str) -> Option<(u64, usize)> {
    let rest = &line[line.find("CBMEM console at 0x")? + "CBMEM console at 0x".len()..];
    let (addr, rest) = rest.split_once(", ")?;
    let size = rest.split_once(' ')?.0;
    Some((u64::from_str_radix(addr, 16).ok()?, size.parse().ok()?))
}

/// `(address, size)` from parkboot's "CBMEM console at 0x..., N bytes" serial line.
pub fn console_from_serial(outcome: &Outcome) -> (u64, usize) {
    outcome
        .find_line("] CBMEM console at 0x")
        .and_then(console_from_line)
        .unwrap_or_else(|| {
            panic!(
                "parkboot did not log its CBMEM console\n{}",
                outcome.report()
            )
        })
}

/// parkboot's log lines on the serial port: from its first line on, those with its
/// `[seconds.micros] ` timestamp.
pub fn parkboot_serial_lines(outcome: &Outcome) -> Vec<&str> {
    let is_parkboot = |line: &&str| {
        let bytes = line.as_bytes();
        bytes.len() > 15 && bytes[0] == b'[' && bytes[6] == b'.' && &bytes[13..15] == b"] "
    };
    outcome
        .lines()
        .skip_while(|line| !line.contains("started from its coreboot entry"))
        .filter(is_parkboot)
        .collect()
}
