//! The async runtime's errors keep their causes (issue 13, point 5): one error type,
//! shared with sockeye-std.

use std::time::Duration;

use sockeye_smol::{Config, Error, ReliableClient, ReliableError, ReliableOptions, Server};

#[test]
fn a_reliable_connect_to_a_refused_port_times_out_saying_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = ReliableOptions {
        connect_timeout: Duration::from_millis(300),
        ..ReliableOptions::default()
    };
    let url = format!("ws://127.0.0.1:{port}/");
    let error = smol::block_on(ReliableClient::connect(&url, options)).unwrap_err();
    assert!(
        error
            .to_string()
            .to_lowercase()
            .contains("connection refused"),
        "{error}"
    );
    assert!(
        matches!(
            &error,
            Error::Reliable(ReliableError::Timeout { last: Some(last) })
                if matches!(**last, Error::Io(_))
        ),
        "{error:?}"
    );
}

#[test]
fn bind_answers_the_crates_result() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy: sockeye_smol::Result<Server> =
        Server::bind(taken.local_addr().unwrap(), Config::default());
    assert!(matches!(busy, Err(Error::Io(_))));
}
