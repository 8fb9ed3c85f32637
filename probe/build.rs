//! Link arguments for the bare-metal image (the `probe` bin, built only
//! with the `image` feature): a freestanding static ELF laid out by
//! link.ld for `objcopy -O binary`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        &format!("-Wl,-T,{dir}/link.ld"),
        "-Wl,--build-id=none",
        "-Wl,--no-eh-frame-hdr",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
