//! parkboot: the bare-metal binary (to be written)
#![cfg_attr(target_os = "none", no_std, no_main)]
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("parkboot runs on bare metal: build it with --target x86_64-unknown-none");
}
