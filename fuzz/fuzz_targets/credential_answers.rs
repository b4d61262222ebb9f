//! The answers of STS, the metadata server and a credentials URI.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecs_gateway::fuzzing::credential_answers(data);
});
