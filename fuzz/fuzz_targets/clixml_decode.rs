//! Any bytes: decoding never panics, and whatever decodes re-encodes to text that decodes to the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    psgate_shared::fuzzing::clixml_decode(data);
});
