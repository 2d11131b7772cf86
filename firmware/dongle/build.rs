//! Links with esp-hal's `linkall.x` (the chip's memory map, the runtime and the ROM functions).

fn main() {
    println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
    println!("cargo:rerun-if-changed=build.rs");
    // The public key updates over the air must be signed with (`cargo ota keygen`); without
    // one the firmware refuses every update (src/ota.rs). A malformed key fails the build.
    println!("cargo:rerun-if-env-changed=SMARTY_DONGLE_OTA_PUBLIC_KEY");
    if let Ok(key) = std::env::var("SMARTY_DONGLE_OTA_PUBLIC_KEY") {
        let key = key.trim();
        if !key.is_empty() && (key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit())) {
            panic!("SMARTY_DONGLE_OTA_PUBLIC_KEY must be 64 hex digits (cargo ota keygen)");
        }
    }
}
