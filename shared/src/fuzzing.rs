//! The bodies of the fuzz targets, here so that `cargo test` replays their regression corpora
//! (shared/test_data/fuzz) with exactly the checks the fuzzer runs.

use crate::clixml::{decode_document, decode_message, encode_document, encode_message};
use crate::psrp::fragment::Defragmenter;

/// Decodes `data` as a message and as a document; what decodes must survive a round trip.
///
/// # Panics
/// When the codec breaks an invariant: that is what the fuzzer looks for.
pub fn clixml_decode(data: &[u8]) {
    if let Ok(value) = decode_message(data) {
        let xml = encode_message(&value).expect("a decoded value encodes");
        let back = decode_message(xml.as_bytes()).expect("our encoding decodes");
        assert!(back == value, "round trip changed the value: {xml}");
    }
    if let Ok(doc) = decode_document(data) {
        let xml = encode_document(&doc).expect("a decoded document encodes");
        let back = decode_document(xml.as_bytes()).expect("our encoding decodes");
        assert!(back == doc, "round trip changed the document: {xml}");
    }
}

/// Splits `data` into packets at its first byte's value and feeds them to a small defragmenter.
///
/// # Panics
/// When reassembly breaks an invariant.
pub fn psrp_fragment(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut d = Defragmenter::new(4096);
    for packet in rest.chunks(usize::from(split).max(1) * 8) {
        match d.feed(packet) {
            Ok(messages) => assert!(messages.iter().all(|m| m.len() <= 4096)),
            Err(_) => d = Defragmenter::new(4096),
        }
    }
}

/// Feeds each line of `data` to an opened out-of-process client, as a hostile server could.
///
/// # Panics
/// When parsing or the client breaks an invariant.
pub fn outofproc_lines(data: &[u8]) {
    use crate::psrp::outofproc::{OutOfProcClient, Packet};
    use crate::psrp::pool::{PoolConfig, RunspacePool};

    let text = String::from_utf8_lossy(data);
    let id = uuid::Uuid::from_u128(0x7605_6a84_51dc_4f24_9262_ca2a_5546_4b2b);
    let mut client = OutOfProcClient::new(RunspacePool::new(PoolConfig::new(id)));
    client.open().expect("a new pool opens");
    for line in text.split('\n') {
        if let Ok(packet) = Packet::parse(line) {
            assert_eq!(Packet::parse(&packet.to_line()).ok(), Some(packet), "a packet survives a round trip");
        }
        let _ = client.receive_line(line);
        while client.poll_line().is_some() {}
        while client.poll_event().is_some() {}
    }
}
