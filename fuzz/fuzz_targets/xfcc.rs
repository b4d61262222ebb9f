//! The x-forwarded-client-cert parser, with its properties.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ecs_gateway::fuzzing::xfcc(data);
});
