//! Kernel variants on a fake kernel tree: a Makefile with kbuild's targets
//! (tinyconfig, olddefconfig, bzImage with `CC` lines, kernelrelease,
//! headers_install, all with O=) whose "image" is a bzImage header followed
//! by the sources it compiled. Checks each variant is the unpatched tree
//! plus exactly its patches, the tree is never written, a variant compiles
//! only what changed, the uapi export follows the patch, a rerun is cached,
//! and a patch that does not apply is named.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use xtask::kernel_variant::{self, KernelVariant};
use xtask::patch::PatchSet;

/// kbuild's targets as far as the xtask uses them. Objects are copies of
/// their sources, so an image shows which version of each it was built from.
const MAKEFILE: &str = r#"O ?= .
SRCS := $(wildcard src/*.c)
OBJS := $(patsubst src/%.c,$(O)/obj/%.o,$(SRCS))

tinyconfig:
	@echo "CONFIG_64BIT=y" > $(O)/.config
olddefconfig:
	@true
$(O)/obj/%.o: src/%.c
	@mkdir -p $(O)/obj
	@echo "  CC      obj/$*.o"
	@cp $< $@
bzImage: $(OBJS)
	@mkdir -p $(O)/arch/x86/boot
	@cat header.bin $(OBJS) > $(O)/arch/x86/boot/bzImage
kernelrelease:
	@echo 6.1.0-fake
headers_install:
	@mkdir -p $(INSTALL_HDR_PATH)/include/linux
	@cp include/uapi/linux/io_uring.h $(INSTALL_HDR_PATH)/include/linux/
.PHONY: tinyconfig olddefconfig bzImage kernelrelease headers_install
"#;

/// A bzImage's boot header: "HdrS" at 0x202, the version string at
/// 0x20e's pointer + 0x200.
fn header() -> Vec<u8> {
    let mut h = vec![0u8; 0x300];
    h[0x202..0x206].copy_from_slice(b"HdrS");
    h[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
    h.extend_from_slice(b"6.1.0-fake (fake@tree) #1\0");
    h
}

fn fake_tree(root: &Path) {
    for d in ["arch/x86", "kernel", "src", "include/uapi/linux"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("Kconfig"), "# fake\n").unwrap();
    fs::write(root.join("Makefile"), MAKEFILE).unwrap();
    fs::write(root.join("header.bin"), header()).unwrap();
    for f in ["a", "b", "c"] {
        fs::write(
            root.join(format!("src/{f}.c")),
            format!("int {f}(void) {{ return 0; }}\n"),
        )
        .unwrap();
    }
    fs::write(
        root.join("include/uapi/linux/io_uring.h"),
        "#define IORING_FAKE 1\n",
    )
    .unwrap();
}

fn image(v: &KernelVariant) -> String {
    String::from_utf8_lossy(&fs::read(&v.kernel.image).unwrap()).into_owned()
}

#[test]
fn each_kernel_variant_is_the_tree_plus_its_patches_built_incrementally() {
    let tmp = tempfile::tempdir().unwrap();
    // The cache lives here for this test binary alone.
    std::env::set_var("XDG_CACHE_HOME", tmp.path().join("cache"));
    let tree = tmp.path().join("linux");
    fake_tree(&tree);
    let before = common::tree_hash(&tree);
    let base_uapi = tmp.path().join("base-headers/include");
    fs::create_dir_all(&base_uapi).unwrap();

    let a_old = "int a(void) { return 0; }\n";
    let b_old = "int b(void) { return 0; }\n";
    let one = common::diff_patch(
        tmp.path(),
        "one",
        "src/a.c",
        a_old,
        "int a(void) { return 1; }\n",
    );
    let two_b = common::diff_patch(
        tmp.path(),
        "two-b",
        "src/b.c",
        b_old,
        "int b(void) { return 2; }\n",
    );
    let two_h = common::diff_patch(
        tmp.path(),
        "two-h",
        "include/uapi/linux/io_uring.h",
        "#define IORING_FAKE 1\n",
        "#define IORING_FAKE 2\n",
    );
    let sets = vec![
        PatchSet::from_files("one", &[one]).unwrap(),
        PatchSet::from_files("two", &[two_b, two_h]).unwrap(),
    ];
    let ctrls: Vec<&contract::Controller> = vec![];
    let built = kernel_variant::build(&tree, "fake tree", &ctrls, &base_uapi, &sets).unwrap();
    assert_eq!(built.len(), 2);
    let (v1, v2) = (&built[0], &built[1]);

    // Each image is the tree plus exactly its own patches.
    let (i1, i2) = (image(v1), image(v2));
    assert!(i1.contains("return 1;") && i1.contains(b_old), "{i1}");
    assert!(i2.contains("return 2;") && i2.contains(a_old), "{i2}");
    assert!(!i2.contains("return 1;"), "{i2}");
    // Incremental in one build directory: the one-file patch compiled one
    // object; the next variant its own file and the file the first one
    // changed, which `unapply` restored (the object held the first
    // variant's code).
    assert_eq!(v1.objects, Some(1), "{v1:?}");
    assert_eq!(v2.objects, Some(2), "{v2:?}");
    // The uapi export follows the patch: only the second touches it.
    assert!(!v1.uapi_changed);
    assert_eq!(v1.kernel.uapi.as_deref(), Some(base_uapi.as_path()));
    assert!(v2.uapi_changed);
    let h = fs::read_to_string(v2.kernel.uapi.as_ref().unwrap().join("linux/io_uring.h")).unwrap();
    assert_eq!(h, "#define IORING_FAKE 2\n");
    assert_eq!(v1.kernel.release, "6.1.0-fake");
    // The user's tree was only read.
    assert_eq!(common::tree_hash(&tree), before);

    // kselftest-install's route: the uapi of the tree with a set, exported
    // from the work copy without building a kernel.
    let only_h = PatchSet::from_files("h", &[tmp.path().join("two-h.patch")]).unwrap();
    let u = kernel_variant::uapi_of(&tree, &only_h).unwrap();
    assert_eq!(
        fs::read_to_string(u.join("linux/io_uring.h")).unwrap(),
        "#define IORING_FAKE 2\n"
    );
    assert_eq!(common::tree_hash(&tree), before);

    // A rerun finds both in the cache and compiles nothing.
    let again = kernel_variant::build(&tree, "fake tree", &ctrls, &base_uapi, &sets).unwrap();
    assert!(again.iter().all(|v| v.objects.is_none()), "{again:?}");
    assert_eq!(image(&again[0]), i1);

    // A patch that does not apply names its file, hunk and kernel file,
    // and leaves the tree as it was.
    let bad = common::diff_patch(
        tmp.path(),
        "bad",
        "src/c.c",
        "int c(void) { return 7; }\n",
        "int c(void) { return 8; }\n",
    );
    let err = kernel_variant::build(
        &tree,
        "fake tree",
        &ctrls,
        &base_uapi,
        &[PatchSet::from_files("bad", &[bad]).unwrap()],
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("bad.patch") && msg.contains("src/c.c") && msg.contains("@@ -1 +1 @@"),
        "{msg}"
    );
    assert_eq!(common::tree_hash(&tree), before);
}

#[test]
fn bad_kernel_patch_inputs_get_one_clear_message_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let null = format!(
        "{}/tests/fixtures/patches/kernel/0001-io_uring-reword-a-comment-changes-no-code.patch",
        env!("CARGO_MANIFEST_DIR")
    );
    for (args, says) in [
        (
            vec!["--kernel-patch", "/no/such.patch"],
            "patch /no/such.patch: no such file",
        ),
        (
            vec!["--guest", "probe", "--kernel-patch", &null],
            "kernel patches concern the Linux guest",
        ),
        (
            vec!["--kernel", "debian", "--kernel-patch", &null],
            "cannot be used with",
        ),
        (
            vec![
                "--guest",
                "linux",
                "--kernel-variant",
                &format!("patched={null}"),
            ],
            "kernel variant patched has the name of a QEMU build",
        ),
        (
            vec!["--kernel-variant", "baseline=x.patch"],
            "not `baseline`",
        ),
        (
            vec![
                "--qemu-binary",
                "/usr/bin/qemu-system-x86_64",
                "--kernel-patch",
                &null,
            ],
            "cannot be used with",
        ),
    ] {
        let o = Command::new(common::XTASK)
            .arg("patch-and-test")
            .args(&args)
            .env("XDG_CACHE_HOME", tmp.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
