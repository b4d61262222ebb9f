//! The simulator's signature verification of a POST body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecs_gateway::fuzzing::simulator_auth(data);
});
