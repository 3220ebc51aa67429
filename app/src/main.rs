//! The `sockeye` server binary: parse flags (and their environment variables), run until
//! SIGINT or SIGTERM. `sockeye --help` lists every flag.

use sockeye::Command;

fn main() {
    match sockeye::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => print!("{}", sockeye::help()),
        Ok(Command::Version) => print!("{}", sockeye::version()),
        Ok(Command::Run(config)) => std::process::exit(sockeye::run(*config)),
        Err(message) => {
            eprint!("{message}");
            std::process::exit(2);
        }
    }
}
