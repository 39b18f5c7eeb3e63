//! Output that needs no database, checked against the files in `tests/cmd/`:
//! every command's `--help` and the usage errors (exit 2) that are refused
//! before any connection. After a deliberate change of a message or a flag,
//! `TRYCMD=overwrite cargo test --test examples` writes the new output into
//! those files; review the diff.

#[test]
fn help_and_usage_errors_read_as_the_files_say() {
    trycmd::TestCases::new()
        .register_bin(
            "tenantmig",
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_tenantmig")),
        )
        // An address where no server listens: these commands must fail
        // (or print) before they would connect.
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("CI", "true")
        .case("tests/cmd/*.trycmd");
}
