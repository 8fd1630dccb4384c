fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // The linker script only applies to the bare-metal kernel; the host build is a
    // stub (and the parser unit tests).
    if std::env::var("TARGET").expect("cargo sets TARGET") == "x86_64-unknown-none" {
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    }
    println!("cargo:rerun-if-changed=linker.ld");
}
