//! The shell scripts' own logic, run with bash: libclang detection in
//! `scripts/build-deps.sh` (what clang-sys would load, never
//! libclang-cpp).

mod common;

use std::path::Path;
use std::process::Output;

use common::repo_dir;

/// Runs `tm__has_libclang DIR` from `scripts/build-deps.sh`.
fn has_libclang(dir: &Path) -> Output {
    std::process::Command::new("bash")
        .current_dir(repo_dir(""))
        .env_remove("LIBCLANG_PATH")
        .args([
            "-c",
            r#"source scripts/build-deps.sh; tm__has_libclang "$1""#,
            "has_libclang",
        ])
        .arg(dir)
        .output()
        .expect("bash runs")
}

/// A fake library folder holding empty files with these names.
fn libdir(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for f in files {
        std::fs::write(dir.path().join(f), b"").expect("write fake library");
    }
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let dir = libdir(&["libclang-cpp.so.14", "libclang-cpp.so"]);
    let out = has_libclang(dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_versioned_libclang_is_found_and_its_path_printed() {
    let dir = libdir(&["libclang-cpp.so.14", "libclang-14.so.1"]);
    let out = has_libclang(dir.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        dir.path().join("libclang-14.so.1").display().to_string()
    );
}

#[test]
fn libclang_with_a_soname_version_is_found() {
    let dir = libdir(&["libclang.so.1"]);
    let out = has_libclang(dir.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        dir.path().join("libclang.so.1").display().to_string()
    );
}

#[test]
fn an_empty_folder_has_no_libclang() {
    let dir = libdir(&[]);
    let out = has_libclang(dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stdout(&out), "");
}

#[test]
fn file_names_count_as_libclang_exactly_when_clang_sys_would_load_them() {
    for (name, is) in [
        ("libclang.so", true),
        ("libclang.so.1", true),
        ("libclang.so.18.1", true),
        ("libclang-14.so", true),
        ("libclang-14.so.1", true),
        ("libclang-cpp.so.14", false),
        ("libclang-cpp.so", false),
        ("libclang.a", false),
        ("libclangBasic.so", false),
    ] {
        let status = std::process::Command::new("bash")
            .current_dir(repo_dir(""))
            .args([
                "-c",
                r#"source scripts/build-deps.sh; tm__is_libclang "$1""#,
                "is_libclang",
                name,
            ])
            .status()
            .expect("bash runs");
        assert_eq!(status.success(), is, "{name}");
    }
}
