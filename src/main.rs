//! The `tenantmig` command line: a thin layer over the library. `main` only
//! maps `run()`'s result to an exit code: 0 all done, 1 some schemas failed
//! or were not reached (or, for `status`, are not up to date), 2 usage,
//! configuration or connection error. The commands live in `cli`, one
//! module per command family (arguments, handler and human printer).

mod cli;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, common::Failure};

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(cli::split_migrate_to(std::env::args_os().collect())) {
        Ok(cli) => cli,
        // A usage error may quote an argument, e.g. a URL given without
        // --database-url: its password is masked like any other message.
        Err(e) if e.use_stderr() => {
            eprint!("{}", tenantmig::mask::mask_secrets(&e.render().to_string()));
            return ExitCode::from(e.exit_code() as u8);
        }
        Err(e) => e.exit(),
    };
    cli::common::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Tool(e)) => {
            // Masked again here: no message ever shows a password.
            eprintln!("error: {}", tenantmig::mask::mask_secrets(&e.to_string()));
            ExitCode::from(e.exit_code() as u8)
        }
        // A closed pipe (`tenantmig status | head`) is not an error.
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Io(e)) => {
            eprintln!("error: writing output: {e}");
            ExitCode::from(2)
        }
    }
}
