//! Where everything in the park region goes, the descriptors parked CPUs load, and the
//! statistics parkboot reports about them. Pure arithmetic, host-tested; the
//! bare-metal side (`bare_metal/parking.rs`) fills the memory.

use core::fmt;

use crate::platform::acpi::{Cpu, MAX_CPUS};
use park::table::MAX_PARKED_CPUS;

use crate::memory::PAGE_SIZE;
/// Stack of each parked CPU: the park loop and its NMI/#MC handlers use a few hundred
/// bytes; the rest is margin.
pub const PARK_STACK_SIZE: u64 = 8192;
/// GDT entries of the park GDT: null, 32-bit code, 64-bit code, data (selectors 0x08,
/// 0x10, 0x18 as in `park::code`).
pub const PARK_GDT: [u64; 4] = [
    0,
    DESCRIPTOR_CODE32_FLAT,
    DESCRIPTOR_CODE64,
    DESCRIPTOR_DATA_FLAT,
];
// The descriptors come with their accessed bit already set, so loading a segment never
// makes the CPU write to the table (parkboot's own copy is in a Rust static).
/// Flat 4 GiB 32-bit code: base 0, limit 0xfffff pages, present, DPL0, execute/read.
pub const DESCRIPTOR_CODE32_FLAT: u64 = 0x00cf_9b00_0000_ffff;
/// 64-bit code (L bit), present, DPL0.
pub const DESCRIPTOR_CODE64: u64 = 0x00af_9b00_0000_ffff;
/// Flat 4 GiB data, present, DPL0, read/write.
pub const DESCRIPTOR_DATA_FLAT: u64 = 0x00cf_9300_0000_ffff;
pub const IDT_ENTRIES: usize = 256;

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// Offsets within the park region (which is page-aligned and below 4 GiB, because
/// the real-mode trampoline loads its GDT pointer and CR3 with 32-bit values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkLayout {
    pub base: u64,
    pub table: u64,
    pub code: u64,
    pub gdt: u64,
    pub idt: u64,
    pub stacks: u64,
    pub cpu_count: u64,
    pub size: u64,
}

impl ParkLayout {
    /// Lays out: park table, park code (page-aligned so the ResetVector at its start
    /// fits in one page), GDT, IDT, one stack per CPU. (The firmware page tables the
    /// parked CPUs use are a region of their own: parkboot builds them at boot, parked
    /// or not.)
    pub fn new(base: u64, table_bytes: u64, code_bytes: u64, cpu_count: u64) -> Self {
        let table = base;
        let code = table + pages(table_bytes);
        let gdt = code + pages(code_bytes);
        let idt = gdt + PAGE_SIZE;
        let stacks = idt + pages(IDT_ENTRIES as u64 * 16);
        let end = stacks + cpu_count * PARK_STACK_SIZE;
        ParkLayout {
            base,
            table,
            code,
            gdt,
            idt,
            stacks,
            cpu_count,
            size: end - base,
        }
    }

    /// Size of the region for these inputs, before a base is chosen.
    pub fn size_for(table_bytes: u64, code_bytes: u64, cpus: u64) -> u64 {
        Self::new(0, table_bytes, code_bytes, cpus).size
    }

    /// Top of CPU `index`'s stack (16-byte aligned, stacks grow down).
    pub fn stack_top(&self, index: u64) -> u64 {
        self.stacks + (index + 1) * PARK_STACK_SIZE
    }
}

/// Which CPUs of the MADT get a park table slot when there are more than `capacity`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPlan {
    /// Indexes into the MADT's CPU list, in MADT order: the boot processor, then the
    /// usable CPUs while room is left, then unusable ones (state `Disabled`) while room
    /// is left.
    pub slotted: heapless::Vec<usize, MAX_PARKED_CPUS>,
    /// APIC IDs of the usable CPUs (enabled or online-capable, not the boot processor)
    /// that did not fit, in MADT order: never started, and withheld from kernels.
    pub beyond_table: heapless::Vec<u32, MAX_CPUS>,
}

impl SlotPlan {
    /// Plans slots for `cpus` (at most [`MAX_CPUS`] of them, as the MADT parser keeps)
    /// with room for `capacity` (at most [`MAX_PARKED_CPUS`]).
    pub fn new(cpus: &[Cpu], boot_apic_id: u32, capacity: usize) -> SlotPlan {
        let capacity = capacity.min(MAX_PARKED_CPUS);
        let mut take = [false; MAX_CPUS];
        let mut taken = 0;
        let ranks: [&dyn Fn(&Cpu) -> bool; 3] = [
            &|cpu| cpu.apic_id == boot_apic_id,
            &|cpu| cpu.apic_id != boot_apic_id && cpu.is_usable(),
            &|cpu| cpu.apic_id != boot_apic_id && !cpu.is_usable(),
        ];
        for rank in ranks {
            for (taken_cpu, cpu) in take.iter_mut().zip(cpus) {
                if taken < capacity && rank(cpu) && !*taken_cpu {
                    *taken_cpu = true;
                    taken += 1;
                }
            }
        }
        let mut plan = SlotPlan {
            slotted: heapless::Vec::new(),
            beyond_table: heapless::Vec::new(),
        };
        for (index, (cpu, &taken_cpu)) in cpus.iter().zip(&take).enumerate() {
            if taken_cpu {
                // At most `capacity` <= MAX_PARKED_CPUS are taken.
                let _ = plan.slotted.push(index);
            } else if cpu.is_usable() && cpu.apic_id != boot_apic_id {
                // At most MAX_CPUS CPUs are looked at.
                let _ = plan.beyond_table.push(cpu.apic_id);
            }
        }
        plan
    }
}

/// A list of APIC IDs written as ranges of consecutive IDs: `256-299, 301, 400-401`.
pub struct IdRanges<'a>(pub &'a [u32]);

impl fmt::Display for IdRanges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = ids.next() {
            let mut end = start;
            while ids.peek() == Some(&end.wrapping_add(1)) && end != u32::MAX {
                end += 1;
                ids.next();
            }
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

/// A 64-bit interrupt gate, as the CPU reads it from the IDT.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptGate {
    pub offset_low: u16,
    pub selector: u16,
    pub ist: u8,
    pub type_attributes: u8,
    pub offset_middle: u16,
    pub offset_high: u32,
    pub reserved: u32,
}

const _: () = assert!(core::mem::size_of::<InterruptGate>() == 16);

/// Present, DPL0, 64-bit interrupt gate (interrupts stay off in the handler).
pub const GATE_INTERRUPT_PRESENT: u8 = 0x8E;

impl InterruptGate {
    pub const MISSING: InterruptGate = InterruptGate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attributes: 0,
        offset_middle: 0,
        offset_high: 0,
        reserved: 0,
    };

    pub fn new(handler: u64, selector: u16) -> Self {
        InterruptGate {
            offset_low: handler as u16,
            selector,
            ist: 0,
            type_attributes: GATE_INTERRUPT_PRESENT,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }

    pub fn handler(&self) -> u64 {
        self.offset_low as u64 | (self.offset_middle as u64) << 16 | (self.offset_high as u64) << 32
    }
}

/// Minimum, median and maximum of a set of measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    pub min: u64,
    pub median: u64,
    pub max: u64,
    pub count: usize,
}

impl Spread {
    /// Of `values`, sorted in `scratch` (at most `scratch.len()` of them are used);
    /// `None` when there are none.
    pub fn of_values(values: impl Iterator<Item = u64>, scratch: &mut [u64]) -> Option<Spread> {
        let mut n = 0;
        for (slot, value) in scratch.iter_mut().zip(values) {
            *slot = value;
            n += 1;
        }
        Spread::of(scratch.get_mut(..n)?)
    }

    /// The summary JSON form: `{"min":..,"median":..,"max":..}`.
    pub fn json(&self) -> SpreadJson {
        SpreadJson(*self)
    }

    /// Sorts `samples` in place; `None` when there are none.
    pub fn of(samples: &mut [u64]) -> Option<Spread> {
        samples.sort_unstable();
        let n = samples.len();
        let (&min, &max) = (samples.first()?, samples.last()?);
        let middle = *samples.get(n / 2)?;
        let median = if n % 2 == 1 {
            middle
        } else {
            (*samples.get(n / 2 - 1)? + middle) / 2
        };
        Some(Spread {
            min,
            median,
            max,
            count: n,
        })
    }
}

/// "min / median / max", each as a [`Duration`] of nanoseconds.
impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} / {} / {}",
            Duration(self.min),
            Duration(self.median),
            Duration(self.max)
        )
    }
}

/// See [`Spread::json`].
pub struct SpreadJson(Spread);

impl fmt::Display for SpreadJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "{{\"min\":{},\"median\":{},\"max\":{}}}",
            s.min, s.median, s.max
        )
    }
}

/// Nanoseconds shown in the unit that reads best (ns, us or ms).
pub struct Duration(pub u64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns < 10_000 {
            write!(f, "{ns} ns")
        } else if ns < 10_000_000 {
            write!(f, "{}.{} us", ns / 1000, (ns % 1000) / 100)
        } else {
            write!(f, "{}.{} ms", ns / 1_000_000, (ns % 1_000_000) / 100_000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    fn cpu(apic_id: u32, usable: bool) -> Cpu {
        Cpu {
            apic_id,
            processor_uid: apic_id,
            enabled: usable,
            online_capable: false,
            from_x2apic_entry: apic_id > 254,
        }
    }

    #[test]
    fn every_cpu_gets_a_slot_when_there_is_room() {
        let cpus = [cpu(0, true), cpu(1, true), cpu(2, false), cpu(300, true)];
        let plan = SlotPlan::new(&cpus, 0, 256);
        assert_eq!(plan.slotted.as_slice(), &[0, 1, 2, 3]);
        assert!(plan.beyond_table.is_empty());
    }

    #[test]
    fn cpus_beyond_the_table_are_named_boot_processor_first() {
        // The boot processor last in the MADT, a disabled CPU early: with room for 3,
        // the boot processor and the first two usable APs get slots, in MADT order.
        let cpus = [
            cpu(5, false),
            cpu(1, true),
            cpu(2, true),
            cpu(256, true),
            cpu(257, true),
            cpu(0, true),
        ];
        let plan = SlotPlan::new(&cpus, 0, 3);
        assert_eq!(plan.slotted.as_slice(), &[1, 2, 5]);
        assert_eq!(plan.beyond_table.as_slice(), &[256, 257]);
        // Room for the usable ones too: the disabled CPU takes the last slot.
        let plan = SlotPlan::new(&cpus, 0, 6);
        assert_eq!(plan.slotted.as_slice(), &[0, 1, 2, 3, 4, 5]);
        let plan = SlotPlan::new(&cpus, 0, 5);
        assert_eq!(plan.slotted.as_slice(), &[1, 2, 3, 4, 5]);
        assert!(plan.beyond_table.is_empty());
    }

    #[test]
    fn three_hundred_cpus_fill_the_table_and_name_the_rest() {
        let cpus: std::vec::Vec<Cpu> = (0..300).map(|id| cpu(id, true)).collect();
        let plan = SlotPlan::new(&cpus, 0, MAX_PARKED_CPUS);
        assert_eq!(plan.slotted.len(), MAX_PARKED_CPUS);
        assert_eq!(plan.beyond_table.len(), 300 - MAX_PARKED_CPUS);
        assert_eq!(
            std::format!("{}", IdRanges(&plan.beyond_table)),
            std::format!("{}-299", MAX_PARKED_CPUS)
        );
    }

    #[test]
    fn id_ranges_join_consecutive_ids() {
        let text = |ids: &[u32]| std::format!("{}", IdRanges(ids));
        assert_eq!(text(&[]), "");
        assert_eq!(text(&[7]), "7");
        assert_eq!(
            text(&[256, 257, 258, 300, 400, 401]),
            "256-258, 300, 400-401"
        );
        assert_eq!(text(&[3, 2]), "3, 2");
        assert_eq!(text(&[u32::MAX - 1, u32::MAX]), "4294967294-4294967295");
    }

    #[test]
    fn layout_is_page_aligned_and_ordered() {
        let l = ParkLayout::new(0x7f00_0000, 32_896, 1500, 4);
        assert_eq!(l.table, 0x7f00_0000);
        assert_eq!(l.code, 0x7f00_0000 + 9 * PAGE_SIZE);
        assert_eq!(l.code % PAGE_SIZE, 0);
        assert_eq!(l.gdt, l.code + PAGE_SIZE);
        assert_eq!(l.idt, l.gdt + PAGE_SIZE);
        assert_eq!(l.stacks, l.idt + PAGE_SIZE);
        assert_eq!(l.stack_top(0), l.stacks + PARK_STACK_SIZE);
        assert_eq!(l.stack_top(3), l.base + l.size);
        assert_eq!(ParkLayout::size_for(32_896, 1500, 4), l.size);
    }

    #[test]
    fn gate_encodes_handler_and_selector() {
        let gate = InterruptGate::new(0x1234_5678_9abc_def0, 0x10);
        assert_eq!(gate.handler(), 0x1234_5678_9abc_def0);
        assert_eq!(gate.selector, 0x10);
        assert_eq!(gate.type_attributes, GATE_INTERRUPT_PRESENT);
    }

    #[test]
    fn spread_of_odd_and_even_counts() {
        assert_eq!(Spread::of(&mut []), None);
        let s = Spread::of(&mut [5, 1, 3]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.count), (1, 3, 5, 3));
        let s = Spread::of(&mut [4, 1, 3, 10]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1, 3, 10));
        assert_eq!(
            format!("{}", s.json()),
            "{\"min\":1,\"median\":3,\"max\":10}"
        );
        let mut scratch = [0u64; 2];
        let s = Spread::of_values([9u64, 7, 100].into_iter(), &mut scratch).unwrap();
        assert_eq!((s.min, s.max, s.count), (7, 9, 2));
        assert_eq!(Spread::of_values(core::iter::empty(), &mut scratch), None);
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(format!("{}", Duration(950)), "950 ns");
        assert_eq!(format!("{}", Duration(12_345)), "12.3 us");
        assert_eq!(format!("{}", Duration(25_500_000)), "25.5 ms");
    }
}
