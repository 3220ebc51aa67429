//! Python `websockets` as a client against the sockeye-std echo server.

use std::collections::HashMap;
use std::time::Duration;

use sockeye_std::{DeflateConfig, Server, ServerHandle};
use sockeye_tests::{
    bounded, spawn_std_deflate_echo_server, spawn_std_echo_server, test_config, Peer,
};

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

/// Runs the `deflate` scenario (`default` or `limited` offer) against a std echo server
/// answering by `policy`.
fn run_deflate(offer: &'static str, policy: DeflateConfig) -> HashMap<String, String> {
    let report = run_against("deflate", Some(offer), move || {
        spawn_std_deflate_echo_server(test_config(), policy)
    });
    assert_eq!(report["ok"], "True");
    report
}

#[test]
fn deflate_is_negotiated_with_a_python_client_and_messages_round_trip() {
    // websockets offers `client_max_window_bits` and no limit on ours: all 15 bits.
    let report = run_deflate("default", DeflateConfig::on());
    assert_eq!(report["extensions"], "permessage-deflate");
    assert_eq!(
        report["server_params"],
        "Some(DeflateParams { server_no_context_takeover: false, \
         client_no_context_takeover: false, server_max_window_bits: 15, \
         client_max_window_bits: 15 })"
    );
}

#[test]
fn a_python_client_limiting_our_window_gets_it() {
    // The client asks for a 10-bit window and no context takeover on our side (zlib's
    // inflater refuses a reference further back); our policy limits its window to 11.
    let mut policy = DeflateConfig::on();
    policy.max_window_bits = 11;
    let report = run_deflate("limited", policy);
    assert_eq!(
        report["extensions"],
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; \
         client_max_window_bits=11"
    );
    assert_eq!(
        report["server_params"],
        "Some(DeflateParams { server_no_context_takeover: true, \
         client_no_context_takeover: false, server_max_window_bits: 10, \
         client_max_window_bits: 11 })"
    );
}

#[test]
fn a_server_without_compression_declines_a_python_offer() {
    let report = run_against("deflate", Some("default"), || {
        spawn_std_echo_server(test_config())
    });
    assert_eq!(report["ok"], "True");
    assert_eq!(report["extensions"], "None");
    assert_eq!(report["server_params"], "None");
}
