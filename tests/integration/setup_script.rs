//! `./run.sh setup`'s detection of libclang, over fixture folder trees: what bindgen loads is
//! libclang's C library; libclang-cpp (all a fresh Debian machine may have) is not it.

use crate::support::repo_root;
use std::path::Path;

/// Runs the detection with `root` standing for `/`; the folder it found, if any.
fn find_libclang(root: &Path) -> Option<String> {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/find_libclang.sh"))
        .args(["--root".as_ref(), root.as_os_str()])
        .output()
        .expect("bash runs");
    let found = String::from_utf8(out.stdout).unwrap();
    match out.status.success() {
        true => Some(found.trim().strip_prefix(root.to_str().unwrap()).unwrap().to_string()),
        false => {
            assert!(found.is_empty(), "nothing printed when nothing is found: {found}");
            None
        }
    }
}

fn tree(files: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for file in files {
        let path = root.path().join(file.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }
    root
}

#[test]
fn only_libclang_cpp_is_not_libclang() {
    let root = tree(&["/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14", "/usr/lib/llvm-14/lib/libclang-cpp.so.14"]);
    assert_eq!(find_libclang(root.path()), None, "setup must install libclang-dev here");
}

#[test]
fn a_versioned_libclang_is_found_where_it_lives() {
    let root = tree(&["/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14", "/usr/lib/llvm-14/lib/libclang-14.so.1"]);
    assert_eq!(find_libclang(root.path()).as_deref(), Some("/usr/lib/llvm-14/lib"));
}

#[test]
fn a_plain_libclang_so_is_found() {
    let root = tree(&["/usr/lib/libclang.so"]);
    assert_eq!(find_libclang(root.path()).as_deref(), Some("/usr/lib"));
    let root = tree(&["/usr/lib/x86_64-linux-gnu/libclang.so.1"]);
    assert_eq!(find_libclang(root.path()).as_deref(), Some("/usr/lib/x86_64-linux-gnu"));
}

#[test]
fn the_newest_llvm_wins() {
    let root = tree(&["/usr/lib/llvm-13/lib/libclang-13.so.1", "/usr/lib/llvm-16/lib/libclang-16.so.1", "/usr/lib/llvm-9/lib/libclang.so"]);
    assert_eq!(find_libclang(root.path()).as_deref(), Some("/usr/lib/llvm-16/lib"));
}
