//! The error catalogue against the reference, and every row of it through
//! the whole stack: ECS (the simulator) answers with the code, the caller
//! gets the row's gRPC code, ErrorInfo and RetryInfo.

mod support;

use ecs_gateway::error::catalogue::{self, CATALOGUE, Source};
use ecs_gateway::simulator::Fault;
use tonic_types::StatusExt;

/// Every `HTTP-status Code` row of the reference's error table.
fn reference_codes() -> Vec<(u16, String)> {
    let text = include_str!("data/ModifyInstanceNetworkSpec.txt");
    let table = &text[text.find("Error codes").expect("an error table")..];
    table
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let status: u16 = words.next()?.parse().ok()?;
            let code = words.next()?;
            (100..600)
                .contains(&status)
                .then(|| (status, code.to_owned()))
        })
        .collect()
}

#[test]
fn every_reference_code_has_a_row() {
    let codes = reference_codes();
    assert!(codes.len() >= 75, "the table parsed: {} rows", codes.len());
    for (status, code) in &codes {
        let entry = catalogue::lookup(code, *status)
            .unwrap_or_else(|| panic!("{status} {code} has no row"));
        assert_eq!(entry.http_status, *status, "{code}");
        assert_eq!(entry.source, Source::Reference, "{code}");
    }
    let reference_rows = CATALOGUE
        .iter()
        .filter(|e| e.source == Source::Reference)
        .count();
    assert_eq!(
        reference_rows,
        codes.len(),
        "no reference row without its source line"
    );
}

#[tokio::test]
async fn every_ecs_code_reaches_the_caller() {
    // One attempt, no breaker: each injected answer is the caller's answer.
    let h = support::start_with(ecs_gateway::simulator::Config::demo(), |c| {
        c.upstream.max_attempts = 1;
        c.upstream.breaker_failures = 10_000;
    })
    .await;
    for entry in CATALOGUE.iter().filter(|e| e.source != Source::Gateway) {
        h.sim.inject(Fault::Error {
            code: entry.code.into(),
            http_status: entry.http_status,
        });
        let mut request = support::request("i-demo-postpaid");
        request.internet_max_bandwidth_out = Some(10);
        request.client_token = format!("walk-{}-{}", entry.code, entry.http_status);
        let status = h.call(request.clone()).await.unwrap_err();
        assert_eq!(
            status.code(),
            entry.grpc,
            "{} {}",
            entry.http_status,
            entry.code
        );
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, entry.code);
        assert_eq!(info.domain, "ecs.aliyuncs.com");
        assert_eq!(info.metadata["http_status"], entry.http_status.to_string());
        assert_eq!(info.metadata["request_id"].len(), 36);
        assert_eq!(info.metadata["client_token"], request.client_token);
        assert!(info.metadata["recommend"].contains(entry.code));
        assert_eq!(
            details.retry_info().and_then(|r| r.retry_delay),
            entry.retry_after,
            "{}",
            entry.code
        );
    }
    assert_eq!(
        h.sim.instance("i-demo-postpaid").unwrap().bandwidth_out,
        5,
        "no injected error applied a change"
    );
}
