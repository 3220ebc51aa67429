//! Python `websockets` as a client against the sockeye-std echo server.

use std::collections::HashMap;
use std::time::Duration;

use sockeye_tests::{bounded, spawn_std_echo_server, test_config, Peer};

/// Runs `peers/client.py` against a fresh std echo server and returns its report.
fn run(scenario: &'static str, arg: Option<&'static str>) -> HashMap<String, String> {
    bounded(Duration::from_secs(60), move || {
        let server = spawn_std_echo_server(test_config());
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
