//! Links with esp-hal's `linkall.x` (the chip's memory map, the runtime and the ROM functions).

fn main() {
    println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
    println!("cargo:rerun-if-changed=build.rs");
}
