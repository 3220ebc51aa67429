//! Python `websockets` as a client against the sockeye-std echo server.

use std::collections::HashMap;
use std::time::Duration;

use sockeye_std::{Server, ServerHandle};
use sockeye_tests::{bounded, spawn_std_echo_server, test_config, Peer};

/// Runs `peers/client.py` against a fresh std echo server and returns its report.
fn run(scenario: &'static str, arg: Option<&'static str>) -> HashMap<String, String> {
    run_against(scenario, arg, || spawn_std_echo_server(test_config()))
}

/// Runs `peers/client.py` against the server `start` returns.
fn run_against(
    scenario: &'static str,
    arg: Option<&'static str>,
    start: impl FnOnce() -> ServerHandle + Send + 'static,
) -> HashMap<String, String> {
    bounded(Duration::from_secs(60), move || {
        let server = start();
        let url = format!("ws://{}/echo", server.local_addr());
        let mut args = vec![url.as_str(), scenario];
        args.extend(arg);
        let (status, lines, stderr) =
            Peer::python("client.py", &args).finish(Duration::from_secs(45));
        assert!(status.success(), "client.py {scenario} failed:\n{stderr}");
        lines
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

#[test]
fn text_messages_echo() {
    assert_eq!(run("text", None)["ok"], "True");
}

#[test]
fn binary_messages_echo() {
    assert_eq!(run("binary", None)["ok"], "True");
}

#[test]
fn one_mebibyte_messages_echo() {
    assert_eq!(run("large", None)["ok"], "True");
}

#[test]
fn fragmented_messages_are_reassembled() {
    assert_eq!(run("fragmented", None)["ok"], "True");
}

#[test]
fn pings_get_pongs() {
    assert_eq!(run("ping", None)["ok"], "True");
}

#[test]
fn normal_close_is_echoed() {
    let report = run("close", Some("1000"));
    assert_eq!(report["sent_code"], "1000");
    assert_eq!(report["rcvd_code"], "1000");
    assert_eq!(report["rcvd_then_sent"], "False");
}

#[test]
fn application_close_code_is_echoed() {
    let report = run("close", Some("4000"));
    assert_eq!(report["sent_code"], "4000");
    assert_eq!(report["rcvd_code"], "4000");
}

#[test]
fn server_initiated_close_reaches_the_client() {
    let report = run("server_close", Some("4001"));
    assert_eq!(report["rcvd_code"], "4001");
    assert_eq!(report["rcvd_reason"], "server says bye");
    assert_eq!(report["sent_code"], "4001");
    assert_eq!(report["rcvd_then_sent"], "True");
}

/// A std server that allows one origin and picks "chat" when offered, then echoes.
fn policy_server() -> ServerHandle {
    Server::bind("127.0.0.1:0", test_config())
        .unwrap()
        .check_origin(|origin| origin == Some("http://good.example"))
        .select_protocol(|req| req.protocols().find(|p| *p == "chat").map(String::from))
        .spawn(|mut ws| {
            while let Ok(Some(message)) = ws.recv() {
                if ws.send(message).is_err() {
                    break;
                }
            }
        })
        .unwrap()
}

#[test]
fn refused_origin_gets_403() {
    let report = run_against("origin", Some("http://evil.example"), policy_server);
    assert_eq!(report["accepted"], "False");
    assert_eq!(report["status"], "403");
    let report = run_against("origin", Some("http://good.example"), policy_server);
    assert_eq!(report["accepted"], "True");
}

#[test]
fn subprotocol_is_negotiated() {
    let report = run_against("subprotocol", Some("http://good.example"), policy_server);
    assert_eq!(report["subprotocol"], "chat");
}
