//! Where and how the APs are parked: the park region's layout (park table, mailbox, park
//! code, page tables, GDT, IDT). The park table's ABI itself is the `park` crate's.

pub mod layout;
