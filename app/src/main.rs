//! The `sockeye` server binary: parse flags (and their environment variables), run until
//! SIGINT or SIGTERM. `sockeye --help` lists every flag.

use sockeye::Command;

fn main() {
    let command = sockeye::parse(std::env::args().skip(1), |name| std::env::var(name).ok());
    match command {
        Ok(Command::Help) => print!("{}", sockeye::help()),
        Ok(Command::Run(config)) => std::process::exit(sockeye::run(*config)),
        Err(message) => {
            eprintln!("sockeye: {message}");
            eprintln!("try `sockeye --help`");
            std::process::exit(2);
        }
    }
}
