//! The credentials INI file parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecs_gateway::fuzzing::credentials_file(data);
});
