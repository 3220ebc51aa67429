//! A `wss://` client given no TLS configuration trusts the platform's store
//! (`tls::platform_client_config`, through `rustls-native-certs`), which an operator
//! points at a CA of their own with `SSL_CERT_FILE`. Its own test binary: the variable is
//! set for the whole process, before the store is loaded (once per process).
#![cfg(feature = "tls")]

use sockeye_std::tls::server_config;
use sockeye_std::{Client, ClientOptions, CloseCode, Config, Message, Server};

#[test]
fn a_wss_client_with_default_options_trusts_a_ca_the_platform_store_names() {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let server_tls = server_config(vec![cert.der().clone()], key).unwrap();
    let ca_file = std::env::temp_dir().join(format!("sockeye-roots-{}.pem", std::process::id()));
    std::fs::write(&ca_file, cert.pem()).unwrap();
    // The only test in this binary, and no thread runs yet.
    std::env::set_var("SSL_CERT_FILE", &ca_file);

    let server = Server::bind("127.0.0.1:0", Config::default())
        .unwrap()
        .tls(server_tls)
        .spawn(|mut ws| {
            while let Ok(Some(message)) = ws.recv() {
                if ws.send(message).is_err() {
                    break;
                }
            }
        })
        .unwrap();
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    // No `tls` in the options: the platform's store, which now holds the test's CA.
    let mut ws = Client::connect_tls(&url, Config::default(), ClientOptions::default())
        .expect("the platform store trusts the CA SSL_CERT_FILE names");
    ws.send(Message::text("verified by the platform's roots"))
        .unwrap();
    assert_eq!(
        ws.recv().unwrap(),
        Some(Message::text("verified by the platform's roots"))
    );
    ws.close(CloseCode::NORMAL, "done").unwrap();
    assert_eq!(ws.recv().unwrap(), None);
    let _ = std::fs::remove_file(&ca_file);
}
