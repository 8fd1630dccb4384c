//! x86_64 4-level identity-map page tables.
//!
//! parkboot runs in long mode with every physical address mapped to itself, because
//! kernels, modules and rewritten tables can live anywhere in RAM and MMIO sits below
//! 4 GiB. The tables built
//! here cover `[0, end)` rounded up to 1 GiB with large pages (1 GiB when the CPU has
//! them, else 2 MiB), all present, writable, supervisor-only and write-back. Cacheability
//! of MMIO is left to the MTRRs the firmware programmed, which take precedence over
//! write-back page attributes for uncached ranges.
//!
//! The builder only needs a source of zeroable 4 KiB pages ([`PageAllocator`]), so host
//! tests run it against pages in a map and walk the result with [`translate`].

use core::fmt;

/// Entries in one page table of any level.
pub const ENTRIES_PER_TABLE: usize = 512;
/// Size of one page table, and of the smallest page.
pub const TABLE_SIZE: u64 = 4096;

/// The flag bits of a page table entry (present, writable, huge page, ...).
pub use x86_64::structures::paging::PageTableFlags;

/// The physical address bits of an entry (bits 12-51, the architectural maximum).
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Flags of every entry parkboot writes: present, writable, supervisor-only, write-back.
/// Never user, write-through, cache-disable, global (kernels reload CR3 and must not
/// inherit parkboot's mappings) or no-execute (kernels are entered through these
/// tables).
pub const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);
/// Flags of every large-page leaf entry parkboot writes.
const LEAF_FLAGS: PageTableFlags = TABLE_FLAGS.union(PageTableFlags::HUGE_PAGE);

/// Size of a page mapped by a PD entry.
pub const SIZE_2M: u64 = 1 << 21;
/// Size of a page mapped by a PDPT entry, and of the range one PD covers.
pub const SIZE_1G: u64 = 1 << 30;
/// Range one PML4 entry covers.
pub const SIZE_512G: u64 = 1 << 39;
/// Highest `end` an identity map can have with 4-level paging: virtual addresses are 48
/// bits sign-extended, so identity mapping stops at the top of the lower canonical
/// half (256 PML4 entries, 128 TiB).
pub const MAX_IDENTITY_END: u64 = 1 << 47;

/// Bit positions of the table indices in a virtual address.
const PML4_SHIFT: u32 = 39;
const PDPT_SHIFT: u32 = 30;
const PD_SHIFT: u32 = 21;
const PT_SHIFT: u32 = 12;
/// Mask of one 9-bit table index.
const INDEX_MASK: u64 = ENTRIES_PER_TABLE as u64 - 1;

/// Where page tables come from.
pub trait PageAllocator {
    /// Physical address of a fresh 4 KiB-aligned page, or `None` when none is left. Its
    /// contents need not be zero: the builder clears it.
    fn allocate_page(&mut self) -> Option<u64>;
    /// The page at physical address `phys` (one returned by `allocate_page`). On bare
    /// metal this is the identity-mapped memory itself.
    fn page_mut(&mut self, phys: u64) -> &mut [u64; ENTRIES_PER_TABLE];
}

/// Read access to page tables, for walking them with [`translate`] and [`walk`].
pub trait PageTableView {
    /// The table at physical address `phys`, or `None` if it cannot be read.
    fn table(&self, phys: u64) -> Option<&[u64; ENTRIES_PER_TABLE]>;
}

/// Choices for [`build_identity_map`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// Map with 1 GiB pages. Only valid when CPUID reports `pdpe1gb`
    /// (leaf 0x8000_0001, EDX bit 26); otherwise 2 MiB pages are used, costing one
    /// extra table per GiB.
    pub gigabyte_pages: bool,
}

/// Why the page tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// `end` was zero: there is nothing to map.
    EmptyRange,
    /// `end` is beyond what a 4-level identity map can reach ([`MAX_IDENTITY_END`]).
    EndTooHigh { end: u64 },
    /// The allocator returned `None` after `allocated` of the `needed` pages.
    OutOfPages { needed: usize, allocated: usize },
    /// The allocator returned an address that is not 4 KiB aligned or does not fit in
    /// a page table entry.
    BadPage { phys: u64 },
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PagingError::EmptyRange => write!(f, "identity map of zero bytes requested"),
            PagingError::EndTooHigh { end } => write!(
                f,
                "cannot identity-map up to {end:#x}: 4-level paging reaches {MAX_IDENTITY_END:#x}"
            ),
            PagingError::OutOfPages { needed, allocated } => {
                write!(f, "out of page table pages after {allocated} of {needed}")
            }
            PagingError::BadPage { phys } => write!(
                f,
                "page table allocator returned unusable address {phys:#x}"
            ),
        }
    }
}

/// Number of whole gigabytes needed to cover `[0, end)`, without overflow.
fn gigabytes(end: u64) -> u64 {
    end.div_ceil(SIZE_1G)
}

/// How many 4 KiB pages [`build_identity_map`] takes for `end` and `options`: one PML4,
/// one PDPT per 512 GiB, and with 2 MiB pages one PD per GiB. For an `end` the builder
/// refuses, this is the count the tables would have needed (saturating at `usize::MAX`).
pub fn pages_needed(end: u64, options: MapOptions) -> usize {
    let gib = gigabytes(end);
    let pdpts = gib.div_ceil(ENTRIES_PER_TABLE as u64);
    let pds = if options.gigabyte_pages { 0 } else { gib };
    let total = 1u64.saturating_add(pdpts).saturating_add(pds);
    usize::try_from(total).unwrap_or(usize::MAX)
}

/// Counts allocations so that running out reports how far the build got.
struct Builder<'a, A: PageAllocator> {
    alloc: &'a mut A,
    needed: usize,
    allocated: usize,
}

impl<A: PageAllocator> Builder<'_, A> {
    /// A cleared page from the allocator.
    fn table(&mut self) -> Result<u64, PagingError> {
        let phys = self.alloc.allocate_page().ok_or(PagingError::OutOfPages {
            needed: self.needed,
            allocated: self.allocated,
        })?;
        if phys & !ADDRESS_MASK != 0 {
            return Err(PagingError::BadPage { phys });
        }
        self.allocated += 1;
        self.alloc.page_mut(phys).fill(0);
        Ok(phys)
    }
}

/// Builds page tables that map `[0, end)`, rounded up to 1 GiB, to itself, and returns
/// the physical address of the PML4 (the value for CR3). Uses exactly
/// [`pages_needed`]`(end, options)` pages from `alloc`.
pub fn build_identity_map(
    alloc: &mut impl PageAllocator,
    end: u64,
    options: MapOptions,
) -> Result<u64, PagingError> {
    if end == 0 {
        return Err(PagingError::EmptyRange);
    }
    if end > MAX_IDENTITY_END {
        return Err(PagingError::EndTooHigh { end });
    }
    let mut builder = Builder {
        needed: pages_needed(end, options),
        alloc,
        allocated: 0,
    };
    let pml4 = builder.table()?;
    let mut pdpt = 0;
    for gib in 0..gigabytes(end) {
        // Both indices are below 512: `gib` < 2^17 because `end` <= 2^47.
        let pml4_index = (gib / ENTRIES_PER_TABLE as u64) as usize;
        let pdpt_index = (gib % ENTRIES_PER_TABLE as u64) as usize;
        let base = gib * SIZE_1G;
        if pdpt_index == 0 {
            pdpt = builder.table()?;
            let slot = builder.alloc.page_mut(pml4).get_mut(pml4_index);
            *slot.ok_or(PagingError::EndTooHigh { end })? = pdpt | TABLE_FLAGS.bits();
        }
        let entry = if options.gigabyte_pages {
            base | LEAF_FLAGS.bits()
        } else {
            let pd = builder.table()?;
            let table = builder.alloc.page_mut(pd);
            let mut page = base;
            for slot in table.iter_mut() {
                *slot = page | LEAF_FLAGS.bits();
                page += SIZE_2M;
            }
            pd | TABLE_FLAGS.bits()
        };
        let slot = builder.alloc.page_mut(pdpt).get_mut(pdpt_index);
        *slot.ok_or(PagingError::EndTooHigh { end })? = entry;
    }
    Ok(pml4)
}

/// Result of walking the tables for one virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Physical address the virtual address translates to.
    pub phys: u64,
    /// Size of the page that maps it (4 KiB, 2 MiB or 1 GiB).
    pub page_size: u64,
    /// Flags of the leaf entry.
    pub flags: PageTableFlags,
}

/// The table index of `virt` at the level whose entries cover `1 << shift` bytes.
fn index(virt: u64, shift: u32) -> usize {
    ((virt >> shift) & INDEX_MASK) as usize
}

/// Walks the 4-level tables rooted at `pml4` for `virt`. `None` when the address is not
/// canonical, an entry on the way is not present, or a table cannot be read.
pub fn walk(tables: &impl PageTableView, pml4: u64, virt: u64) -> Option<Mapping> {
    // Canonical: bits 63..47 all equal.
    let top = virt >> (PML4_SHIFT + 8);
    if top != 0 && top != (u64::MAX >> (PML4_SHIFT + 8)) {
        return None;
    }
    let mut table = pml4;
    for shift in [PML4_SHIFT, PDPT_SHIFT, PD_SHIFT, PT_SHIFT] {
        let entry = *tables.table(table)?.get(index(virt, shift))?;
        let flags = PageTableFlags::from_bits_retain(entry & !ADDRESS_MASK);
        if !flags.contains(PageTableFlags::PRESENT) {
            return None;
        }
        let leaf = shift == PT_SHIFT
            || ((shift == PDPT_SHIFT || shift == PD_SHIFT)
                && flags.contains(PageTableFlags::HUGE_PAGE));
        if leaf {
            let page_size = 1u64 << shift;
            let frame = entry & ADDRESS_MASK & !(page_size - 1);
            return Some(Mapping {
                phys: frame | (virt & (page_size - 1)),
                page_size,
                flags,
            });
        }
        table = entry & ADDRESS_MASK;
    }
    None
}

/// Physical address `virt` maps to through the tables rooted at `pml4`, if mapped.
pub fn translate(tables: &impl PageTableView, pml4: u64, virt: u64) -> Option<u64> {
    walk(tables, pml4, virt).map(|m| m.phys)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::boxed::Box;
    use std::collections::BTreeMap;
    use std::string::ToString;

    /// Pages in a map, handed out from a pretend physical address with a budget.
    struct TestPages {
        pages: BTreeMap<u64, Box<[u64; ENTRIES_PER_TABLE]>>,
        next: u64,
        budget: usize,
    }

    impl TestPages {
        fn new(budget: usize) -> Self {
            TestPages {
                pages: BTreeMap::new(),
                // Somewhere recognisable and unrelated to the mapped addresses.
                next: 0x7_0000_0000,
                budget,
            }
        }
    }

    impl PageAllocator for TestPages {
        fn allocate_page(&mut self) -> Option<u64> {
            if self.budget == 0 {
                return None;
            }
            self.budget -= 1;
            let phys = self.next;
            self.next += TABLE_SIZE;
            // Filled with garbage: the builder must clear it.
            self.pages
                .insert(phys, Box::new([u64::MAX; ENTRIES_PER_TABLE]));
            Some(phys)
        }

        fn page_mut(&mut self, phys: u64) -> &mut [u64; ENTRIES_PER_TABLE] {
            self.pages.get_mut(&phys).expect("page was allocated")
        }
    }

    impl PageTableView for TestPages {
        fn table(&self, phys: u64) -> Option<&[u64; ENTRIES_PER_TABLE]> {
            self.pages.get(&phys).map(|b| &**b)
        }
    }

    const GIANT: MapOptions = MapOptions {
        gigabyte_pages: true,
    };
    const LARGE: MapOptions = MapOptions {
        gigabyte_pages: false,
    };

    /// Builds the map and checks the page count, every page boundary below the rounded
    /// end, the last byte, and that the rounded end itself is unmapped.
    fn check(end: u64, options: MapOptions) -> TestPages {
        let needed = pages_needed(end, options);
        let mut pages = TestPages::new(needed + 10);
        let pml4 = build_identity_map(&mut pages, end, options).unwrap();
        assert_eq!(pages.pages.len(), needed, "pages_needed matches use");
        let page_size = if options.gigabyte_pages {
            SIZE_1G
        } else {
            SIZE_2M
        };
        let mapped_end = end.div_ceil(SIZE_1G) * SIZE_1G;
        let mut addr = 0;
        while addr < mapped_end {
            let m = walk(&pages, pml4, addr).unwrap_or_else(|| panic!("{addr:#x} unmapped"));
            assert_eq!(m.phys, addr);
            assert_eq!(m.page_size, page_size);
            assert_eq!(
                m.flags,
                PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::HUGE_PAGE
            );
            addr += page_size;
        }
        assert_eq!(
            translate(&pages, pml4, mapped_end - 1),
            Some(mapped_end - 1)
        );
        assert_eq!(translate(&pages, pml4, 0x1234_5678), Some(0x1234_5678));
        assert_eq!(translate(&pages, pml4, mapped_end), None);
        assert_eq!(translate(&pages, pml4, mapped_end + SIZE_2M), None);
        assert_eq!(translate(&pages, pml4, mapped_end + SIZE_512G), None);
        // Upper half and non-canonical addresses.
        assert_eq!(translate(&pages, pml4, 0xffff_8000_0000_0000), None);
        assert_eq!(translate(&pages, pml4, 0x0000_8000_0000_0000), None);
        // No table entry is user-accessible, uncached or global.
        for table in pages.pages.values() {
            for &e in table
                .iter()
                .filter(|&&e| e & PageTableFlags::PRESENT.bits() != 0)
            {
                let flags = PageTableFlags::from_bits_retain(e & !ADDRESS_MASK);
                assert!(!flags.intersects(
                    PageTableFlags::USER_ACCESSIBLE
                        | PageTableFlags::WRITE_THROUGH
                        | PageTableFlags::NO_CACHE
                        | PageTableFlags::GLOBAL
                        | PageTableFlags::NO_EXECUTE
                ));
                assert!(flags.contains(PageTableFlags::WRITABLE));
            }
        }
        pages
    }

    #[test]
    fn gigabyte_pages_4g() {
        check(4 * SIZE_1G, GIANT);
        assert_eq!(pages_needed(4 * SIZE_1G, GIANT), 2);
    }

    #[test]
    fn two_megabyte_pages_4g() {
        check(4 * SIZE_1G, LARGE);
        assert_eq!(pages_needed(4 * SIZE_1G, LARGE), 6);
    }

    #[test]
    fn end_not_a_multiple_of_1g() {
        for options in [GIANT, LARGE] {
            check(5 * SIZE_1G + 1, options);
            check(SIZE_1G - 1, options);
            check(1, options);
        }
        assert_eq!(pages_needed(5 * SIZE_1G + 1, LARGE), 1 + 1 + 6);
        assert_eq!(pages_needed(5 * SIZE_1G + 1, GIANT), 1 + 1);
    }

    #[test]
    fn beyond_512g_uses_second_pml4_entry() {
        for options in [GIANT, LARGE] {
            let end = 513 * SIZE_1G;
            let pages = check(end, options);
            let pml4 = *pages.pages.keys().next().unwrap();
            let root = pages.table(pml4).unwrap();
            assert_ne!(root[0] & PageTableFlags::PRESENT.bits(), 0);
            assert_ne!(root[1] & PageTableFlags::PRESENT.bits(), 0);
            assert_eq!(root[2], 0);
            assert_eq!(translate(&pages, pml4, SIZE_512G), Some(SIZE_512G));
        }
        assert_eq!(pages_needed(513 * SIZE_1G, GIANT), 1 + 2);
        assert_eq!(pages_needed(513 * SIZE_1G, LARGE), 1 + 2 + 513);
        assert_eq!(pages_needed(512 * SIZE_1G, GIANT), 1 + 1);
    }

    #[test]
    fn largest_identity_map() {
        let pages = check(MAX_IDENTITY_END, GIANT);
        assert_eq!(pages.pages.len(), 1 + 256);
    }

    #[test]
    fn allocator_runs_out() {
        for options in [GIANT, LARGE] {
            let end = 4 * SIZE_1G;
            let needed = pages_needed(end, options);
            for budget in [0, 1, needed - 1] {
                let mut pages = TestPages::new(budget);
                assert_eq!(
                    build_identity_map(&mut pages, end, options),
                    Err(PagingError::OutOfPages {
                        needed,
                        allocated: budget
                    })
                );
            }
            let mut pages = TestPages::new(needed);
            assert!(build_identity_map(&mut pages, end, options).is_ok());
        }
        assert_eq!(
            PagingError::OutOfPages {
                needed: 6,
                allocated: 2
            }
            .to_string(),
            "out of page table pages after 2 of 6"
        );
    }

    #[test]
    fn bad_ends_refused() {
        let mut pages = TestPages::new(100);
        assert_eq!(
            build_identity_map(&mut pages, 0, GIANT),
            Err(PagingError::EmptyRange)
        );
        for end in [MAX_IDENTITY_END + 1, u64::MAX] {
            assert_eq!(
                build_identity_map(&mut pages, end, GIANT),
                Err(PagingError::EndTooHigh { end })
            );
            // Counting stays panic-free for any end.
            assert!(pages_needed(end, LARGE) > pages_needed(end, GIANT));
        }
        assert!(pages.pages.is_empty());
        assert_eq!(pages_needed(0, LARGE), 1);
    }

    #[test]
    fn misaligned_page_refused() {
        struct Misaligned;
        impl PageAllocator for Misaligned {
            fn allocate_page(&mut self) -> Option<u64> {
                Some(0x1000_0800)
            }
            fn page_mut(&mut self, _: u64) -> &mut [u64; ENTRIES_PER_TABLE] {
                unreachable!("never reached for a refused page")
            }
        }
        assert_eq!(
            build_identity_map(&mut Misaligned, SIZE_1G, GIANT),
            Err(PagingError::BadPage { phys: 0x1000_0800 })
        );
    }

    #[test]
    fn walk_handles_4k_leaves_and_missing_tables() {
        // A hand-made PML4 -> PDPT -> PD -> PT chain mapping 0x20_3000 to 0x55_5000.
        let mut pages = TestPages::new(4);
        let tables: [u64; 4] = core::array::from_fn(|_| pages.allocate_page().unwrap());
        for &t in &tables {
            pages.page_mut(t).fill(0);
        }
        let virt = 0x20_3000 + 0x123;
        pages.page_mut(tables[0])[0] = tables[1] | TABLE_FLAGS.bits();
        pages.page_mut(tables[1])[0] = tables[2] | TABLE_FLAGS.bits();
        pages.page_mut(tables[2])[1] = tables[3] | TABLE_FLAGS.bits();
        pages.page_mut(tables[3])[3] = 0x55_5000 | TABLE_FLAGS.bits();
        assert_eq!(
            walk(&pages, tables[0], virt),
            Some(Mapping {
                phys: 0x55_5123,
                page_size: TABLE_SIZE,
                flags: TABLE_FLAGS
            })
        );
        assert_eq!(translate(&pages, tables[0], 0x20_4000), None);
        // An entry pointing at memory the view cannot read.
        pages.page_mut(tables[2])[2] = 0x9999_0000 | TABLE_FLAGS.bits();
        assert_eq!(translate(&pages, tables[0], 0x40_0000), None);
    }
}
