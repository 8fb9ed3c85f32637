//! Generates io_uring bindings with bindgen from the uapi directory chosen by
//! `uapi::locate`, and compiles a C probe against the same directory so the
//! tests can compare bindgen's layout with the C compiler's.

#[path = "uapi.rs"]
mod uapi;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::{env, fs, process};

use bindgen::callbacks::{EnumVariantValue, ParseCallbacks};

fn main() {
    if let Err(msg) = run() {
        // cargo prints a build script's stderr on failure: one sentence, no backtrace.
        eprintln!("error: uring-sys: {msg}");
        process::exit(1);
    }
}

fn run() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed={}", uapi::ENV);
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build/probe.c");
    println!("cargo:rerun-if-changed=build/uapi.rs");

    let env_value = env::var(uapi::ENV).ok();
    let found = uapi::locate(env_value.as_deref(), Path::new(uapi::SYSTEM_DIR))?;
    println!("cargo:rerun-if-changed={}", found.header.display());

    clang_sys::load().map_err(|e| uapi::libclang_missing(&e))?;

    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let ops = Arc::new(Mutex::new(Vec::new()));
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        // Our directory first, so a kernel tree's headers win over the system's.
        .clang_arg(format!("-I{}", found.dir.display()))
        .allowlist_type("io_uring_(sqe|cqe|params|probe|probe_op)")
        .allowlist_type("io_(sq|cq)ring_offsets")
        .allowlist_type("io_uring_op")
        // Enums that later kernels named (6.1 has them anonymous, 6.12
        // names them): their constants keep their plain C names either way.
        .allowlist_type("io_uring_sqe_flags_bit|io_uring_register_op")
        .prepend_enum_name(false)
        .allowlist_var("IORING_.*|IOSQE_.*|IO_URING_.*")
        .constified_enum_module("io_uring_op")
        .derive_default(true)
        .parse_callbacks(Box::new(OpCollector(ops.clone())))
        .generate()
        .map_err(|e| format!("bindgen failed on {}: {e}", found.header.display()))?;
    bindings
        .write_to_file(out.join("bindings.rs"))
        .map_err(|e| format!("writing bindings.rs: {e}"))?;

    let mut ops = ops.lock().unwrap().clone();
    ops.sort();
    ops.dedup();
    if ops.is_empty() {
        return Err(format!(
            "{} defines no IORING_OP_* opcodes",
            found.header.display()
        ));
    }
    let mut meta = String::new();
    meta.push_str(&format!(
        "pub const UAPI_SOURCE: &str = {:?};\n",
        found.dir.display().to_string()
    ));
    meta.push_str(&format!(
        "pub const UAPI_FROM_ENV: bool = {};\n",
        found.from_env
    ));
    meta.push_str("pub(crate) const OPS: &[(u8, &str)] = &[\n");
    for (value, name) in &ops {
        meta.push_str(&format!("    ({value}, {name:?}),\n"));
    }
    meta.push_str("];\n");
    fs::write(out.join("uapi_meta.rs"), meta).map_err(|e| format!("writing uapi_meta.rs: {e}"))?;

    cc::Build::new()
        .file("build/probe.c")
        .include(&found.dir)
        .warnings(true)
        .try_compile("uring_sys_probe")
        .map_err(|e| {
            format!(
                "compiling the C layout probe against {}: {e}",
                found.dir.display()
            )
        })?;
    Ok(())
}

/// Records every `IORING_OP_*` variant as bindgen sees it, so `op_name` is
/// generated from the header under test rather than from a list kept by hand.
#[derive(Debug)]
struct OpCollector(Arc<Mutex<Vec<(u8, String)>>>);

impl ParseCallbacks for OpCollector {
    fn enum_variant_name(
        &self,
        _enum_name: Option<&str>,
        name: &str,
        value: EnumVariantValue,
    ) -> Option<String> {
        if let Some(short) = name.strip_prefix("IORING_OP_") {
            let v = match value {
                EnumVariantValue::Unsigned(v) => v,
                EnumVariantValue::Signed(v) => v as u64,
                EnumVariantValue::Boolean(b) => b as u64,
            };
            if let Ok(v) = u8::try_from(v) {
                self.0.lock().unwrap().push((v, short.to_string()));
            }
        }
        None
    }
}
