//! `ecs-gateway call`: call a gateway and print the answer, or the error with
//! its details; the exit code is the answer's class
//! ([`client::Outcome`]).

use std::process::ExitCode;

use crate::client;

/// Calls the gateway once and prints what it answered.
pub async fn run(args: &client::CallArgs) -> ExitCode {
    let json = args.output == client::OutputFormat::Json;
    match client::call(args).await {
        Ok(response) if json => out!("{}", client::to_proto_json(&response)),
        Ok(response) => out!("{}", client::describe_response(&response)),
        Err(client::Error::Status(status)) if json => {
            out!("{}", client::status_to_proto_json(&status));
            return ExitCode::from(client::Outcome::of(status.code()) as u8);
        }
        Err(error) => {
            eprintln!("{error}");
            if let Some(hint) = client::hint(args, &error) {
                eprintln!("hint: {hint}");
            }
            return ExitCode::from(error.outcome() as u8);
        }
    }
    ExitCode::SUCCESS
}
