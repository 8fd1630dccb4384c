//! park/README.md documents every shared structure as a table of `| offset | field |
//! type | meaning |` rows, each table after a `<!-- layout: StructName -->` marker.
//! This test reads those tables and compares every row with the struct itself
//! (`offset_of!` and the field's size), so the documentation cannot go stale
//! silently: a wrong offset, name or type, a missing or extra row, a missing table or
//! a layout table without a marker all fail.
// Test code and its harness: a failed expectation is a panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use core::mem::{offset_of, size_of};
use park::mailbox::WakeupMailbox;
use park::reentry::{KernelReport, Multiboot2ParkbootTag};
use park::table::{CpuSlot, ParkTable};

const README: &str = include_str!("../README.md");
const MARKER_START: &str = "<!-- layout:";
const MARKER_END: &str = "-->";
const TABLE_HEADER: &str = "| offset | field | type | meaning |";

/// One field as the struct has it, or as a README row documents it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Field {
    name: String,
    offset: usize,
    size: usize,
}

/// Bytes of the field `$field` of `$type`, without a value of the type.
macro_rules! field_size {
    ($type:ty, $field:ident) => {{
        fn size_of_pointee<T>(_: *const T) -> usize {
            size_of::<T>()
        }
        let value = core::mem::MaybeUninit::<$type>::uninit();
        // SAFETY: addr_of! computes the field's address without reading the
        // (uninitialised) value.
        size_of_pointee(unsafe { core::ptr::addr_of!((*value.as_ptr()).$field) })
    }};
}

/// Every field of `$type`, in declaration order.
macro_rules! fields {
    ($type:ty: $($field:ident),+ $(,)?) => {
        (
            stringify!($type),
            size_of::<$type>(),
            vec![$(Field {
                name: stringify!($field).to_string(),
                offset: offset_of!($type, $field),
                size: field_size!($type, $field),
            }),+],
        )
    };
}

/// The documented structures: name, size, every field.
fn structs() -> Vec<(&'static str, usize, Vec<Field>)> {
    vec![
        fields!(Multiboot2ParkbootTag: tag_type, size, park_table, park_table_version,
            iteration, iterations, reserved),
        fields!(ParkTable: signature, version, table_size, cpu_count, parked_count,
            boot_apic_id, flags, mailbox_address, reset_vector, wake_all_vector,
            wake_all_generation, tsc_hz, reentry_vector, park_region_base,
            park_region_size, boots, slots_offset, slot_size, slot_count,
            cpus_beyond_table, checksum, watcher),
        fields!(CpuSlot: apic_id, state, start_count, nmi_count, wake_count,
            return_count, last_wake_tsc, last_park_tsc, wake_all_seen,
            machine_check_count, fault_vector, fault_rip, stack_top, sipi_tsc,
            first_park_tsc, kernel_scratch, refused_vector, refused_count, doorbell),
        fields!(WakeupMailbox: command, reserved, apic_id, wakeup_vector,
            wake_all_signal, reserved_for_os, reserved_for_firmware),
        fields!(KernelReport: signature, version, status, aps_woken, aps_expected,
            wake_ns_min, wake_ns_median, wake_ns_max, wake_all_ns, message),
    ]
}

/// Bytes of a documented type: `u8`, `u16`, `u32`, `u64`, or `[T; N]` of those.
fn type_size(text: &str) -> Option<usize> {
    match text {
        "u8" => Some(1),
        "u16" => Some(2),
        "u32" => Some(4),
        "u64" => Some(8),
        _ => {
            let inner = text.strip_prefix('[')?.strip_suffix(']')?;
            let (element, count) = inner.split_once(';')?;
            Some(type_size(element.trim())? * count.trim().parse::<usize>().ok()?)
        }
    }
}

fn parse_offset(text: &str) -> Option<usize> {
    match text.strip_prefix("0x") {
        Some(hex) => usize::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// One row `| offset | field | type | meaning |`; the meaning may contain anything.
fn parse_row(line: &str) -> Result<Field, String> {
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    let [_, offset, field, ty, ..] = cells.as_slice() else {
        return Err("fewer than three cells".to_string());
    };
    let offset = parse_offset(offset).ok_or(format!("offset {offset:?} is not a number"))?;
    let name = field
        .strip_prefix('`')
        .and_then(|f| f.strip_suffix('`'))
        .ok_or(format!("field {field:?} is not in backticks"))?;
    let size = type_size(ty).ok_or(format!("type {ty:?} is not u8/u16/u32/u64/[T; N]"))?;
    Ok(Field {
        name: name.to_string(),
        offset,
        size,
    })
}

/// The layout tables of `text`: (struct name, line of its marker, rows).
type Table = (String, usize, Vec<Field>);

fn layout_tables(text: &str) -> Result<Vec<Table>, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim();
        let number = index + 1;
        if line.starts_with(TABLE_HEADER) {
            problems.push(format!(
                "line {number}: a layout table without a `{MARKER_START} Name {MARKER_END}` \
                 line right above it"
            ));
            index += 1;
            continue;
        }
        let Some(name) = line
            .strip_prefix(MARKER_START)
            .and_then(|rest| rest.strip_suffix(MARKER_END))
        else {
            index += 1;
            continue;
        };
        let name = name.trim().to_string();
        if lines.get(index + 1).map(|l| l.trim()) != Some(TABLE_HEADER) {
            problems.push(format!(
                "line {number}: the marker for {name} is not followed by `{TABLE_HEADER}`"
            ));
            index += 1;
            continue;
        }
        // Header, then the |---| separator, then rows up to the first non-row line.
        let mut rows = Vec::new();
        index += 3;
        while index < lines.len() && lines[index].trim_start().starts_with('|') {
            match parse_row(lines[index]) {
                Ok(field) => rows.push(field),
                Err(e) => problems.push(format!("line {}: {name}: {e}", index + 1)),
            }
            index += 1;
        }
        tables.push((name, number, rows));
    }
    if problems.is_empty() {
        Ok(tables)
    } else {
        Err(problems)
    }
}

/// Everything wrong with the layout tables of `text`, compared with the structs.
fn check(text: &str) -> Result<(), Vec<String>> {
    let tables = layout_tables(text)?;
    let mut problems = Vec::new();
    for (name, _, expected) in structs() {
        let found: Vec<&Table> = tables.iter().filter(|t| t.0 == name).collect();
        let [(_, line, rows)] = found.as_slice() else {
            problems.push(format!(
                "{name}: {} layout tables, expected exactly one",
                found.len()
            ));
            continue;
        };
        for field in &expected {
            match rows.iter().find(|row| row.name == field.name) {
                None => problems.push(format!(
                    "{name} (table at line {line}): no row for `{}` (offset {}, {} bytes)",
                    field.name, field.offset, field.size
                )),
                Some(row) if row != field => problems.push(format!(
                    "{name} (table at line {line}): `{}` is documented at offset {}, {} \
                     bytes; the struct has it at offset {}, {} bytes",
                    field.name, row.offset, row.size, field.offset, field.size
                )),
                Some(_) => {}
            }
        }
        for row in rows {
            if !expected.iter().any(|field| field.name == row.name) {
                problems.push(format!(
                    "{name} (table at line {line}): `{}` is not a field of {name}",
                    row.name
                ));
            }
        }
        let documented: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let declared: Vec<&str> = expected.iter().map(|f| f.name.as_str()).collect();
        if problems.is_empty() && documented != declared {
            problems.push(format!(
                "{name} (table at line {line}): rows {documented:?} are not in the \
                 struct's order {declared:?}"
            ));
        }
    }
    for (name, line, _) in &tables {
        if !structs().iter().any(|s| s.0 == name) {
            problems.push(format!(
                "line {line}: a layout table for {name}, which this test does not know"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[test]
fn the_readme_layout_tables_match_the_structs() {
    if let Err(problems) = check(README) {
        panic!(
            "park/README.md does not match the structs:\n  {}",
            problems.join("\n  ")
        );
    }
}

/// The field lists above must name every byte of each struct (none of them has
/// padding), so a field added to a struct but not to the list (and so to no README
/// row) fails here.
#[test]
fn the_field_lists_cover_each_struct_exactly() {
    for (name, size, fields) in structs() {
        let mut end = 0;
        for field in &fields {
            assert_eq!(
                field.offset, end,
                "{name}: `{}` starts at {}, the previous field ends at {end}",
                field.name, field.offset
            );
            end = field.offset + field.size;
        }
        assert_eq!(
            end, size,
            "{name}: the fields end at {end}, the struct at {size}"
        );
    }
}

#[test]
fn a_wrong_offset_is_named() {
    let broken = README.replacen(
        "| 20 | `parked_count` | u32 |",
        "| 24 | `parked_count` | u32 |",
        1,
    );
    assert_ne!(broken, README, "the row to break is not in the README");
    let problems = check(&broken).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ParkTable")
                && p.contains("`parked_count` is documented at offset 24")),
        "{problems:?}"
    );
}

#[test]
fn a_wrong_type_a_missing_row_and_an_unknown_field_are_named() {
    let broken = README
        .replacen(
            "| 8 | `version` | u32 | 1 |",
            "| 8 | `version` | u64 | 1 |",
            1,
        )
        .replacen(
            "| 4 | `state` | u32 | `CpuState`, below |\n",
            "| 4 | `cpu_state` | u32 | `CpuState`, below |\n",
            1,
        );
    assert_ne!(broken, README);
    let problems = check(&broken).unwrap_err();
    let named = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(named("KernelReport"), "{problems:?}");
    assert!(
        named("`version` is documented at offset 8, 8 bytes"),
        "{problems:?}"
    );
    assert!(named("CpuSlot (table at line"), "{problems:?}");
    assert!(named("no row for `state`"), "{problems:?}");
    assert!(
        named("`cpu_state` is not a field of CpuSlot"),
        "{problems:?}"
    );
}

#[test]
fn a_table_without_its_marker_is_named() {
    let broken = README.replacen("<!-- layout: WakeupMailbox -->\n", "", 1);
    assert_ne!(broken, README);
    let problems = check(&broken).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("a layout table without a `<!-- layout:")),
        "{problems:?}"
    );
    let renamed = README.replacen(
        "<!-- layout: WakeupMailbox -->",
        "<!-- layout: Mailbox -->",
        1,
    );
    let problems = check(&renamed).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("WakeupMailbox: 0 layout tables")),
        "{problems:?}"
    );
}

#[test]
fn rows_parse_offsets_types_and_names() {
    assert_eq!(
        parse_row("| 0x10 | `x` | [u64; 2] | a \\| b |"),
        Ok(Field {
            name: "x".to_string(),
            offset: 16,
            size: 16
        })
    );
    assert!(parse_row("| ? | `x` | u32 | |").is_err());
    assert!(parse_row("| 0 | x | u32 | |").is_err());
    assert!(parse_row("| 0 | `x` | usize | |").is_err());
    assert_eq!(type_size("[u8; 2024]"), Some(2024));
}
