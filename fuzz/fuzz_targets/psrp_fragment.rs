//! Any packets: reassembly never panics and never grows past its limit.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    psgate_shared::fuzzing::psrp_fragment(data);
});
