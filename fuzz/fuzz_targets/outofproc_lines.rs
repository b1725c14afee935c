//! Any lines from a server: the out-of-process client never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    psgate_shared::fuzzing::outofproc_lines(data);
});
