//! The Explain request validator, from arbitrary protobuf bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecs_gateway::fuzzing::explain(data);
});
