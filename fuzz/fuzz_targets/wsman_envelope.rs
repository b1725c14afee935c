//! Any bytes as a WS-Management response or request: the envelope parsers never panic, and a request that parses
//! is written back the same by the builder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    psgate_relay::wsman::fuzz_parse(data);
});
