//! ECS answer parsing (success and error bodies).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecs_gateway::fuzzing::error_body(data);
});
