//! A WS-Transfer Get of the server's configuration (what a client reads MaxEnvelopeSizekb from), as a test's probe of
//! an authenticated connection.

#![allow(dead_code)] // Each test binary that includes this uses a part.

use std::time::Duration;

use psgate_relay::transport::winrm::WinrmClient;
use psgate_relay::wsman::{self, Action, ClientConfig, GetResponse, Request, Response, ServerConfig};
use uuid::Uuid;

/// Sends the Get (`padding` bytes of XML comment make it larger) and checks the answer answers it; returns the
/// configuration and whether the answer came sealed.
pub async fn get_config(client: &mut WinrmClient, padding: usize, step: Duration) -> (ServerConfig, bool) {
    let config = ClientConfig::new(client.options().endpoint.to_string(), Uuid::new_v4());
    let message_id = Uuid::new_v4();
    let mut xml = Request::get_config().to_xml(&config, message_id);
    if padding > 0 {
        // A comment makes the envelope as large as wanted without changing its meaning.
        let at = xml.find("<s:Body").expect("a body");
        xml.insert_str(at, &format!("<!--{}-->", "p".repeat(padding)));
    }
    let response = tokio::time::timeout(step, client.send(xml.as_bytes())).await.expect("in time").expect("send");
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    let envelope = wsman::parse_response(&response.body).expect("a WS-Management response");
    envelope.answers(Action::Get, message_id).expect("it answers our Get");
    match envelope.body {
        Response::Get(GetResponse::Config(config)) => (config, response.sealed),
        other => panic!("not a configuration: {other:?}"),
    }
}
