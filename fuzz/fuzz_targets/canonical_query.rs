//! The signer's canonicalization and string to sign.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecs_gateway::fuzzing::canonical_query(data);
});
