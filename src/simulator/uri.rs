//! A credentials URI (`ALIBABA_CLOUD_CREDENTIALS_URI`), as the credentials
//! SDKs read one: `GET /credentials-uri` answers
//! `{"Code":"Success","AccessKeyId","AccessKeySecret","SecurityToken","Expiration"}`
//! with a temporary key of the configured role's account (the same key
//! until the last third of its one-hour lifetime), 404 when no role is
//! configured, and `500 {"Code":"Failure"}` while made to fail.

use std::time::Duration;

use axum::extract::State as AxumState;
use axum::response::Response;
use serde_json::{Value, json};

use super::Simulator;
use super::metadata::Cached;

/// How long the URI's keys live.
const KEY_LIFETIME: Duration = Duration::from_secs(3600);

/// The credentials URI's route.
pub(super) fn routes(router: axum::Router<Simulator>) -> axum::Router<Simulator> {
    router.route("/credentials-uri", axum::routing::get(credentials))
}

async fn credentials(AxumState(sim): AxumState<Simulator>) -> Response {
    if sim.state().credentials_uri_failing {
        return super::json(500, &json!({"Code": "Failure"}));
    }
    let Some(arn) = &sim.inner.credentials_uri_role else {
        return super::json(
            404,
            &json!({"Code": "Failure", "Message": "No role is configured."}),
        );
    };
    let role = super::Role::new(arn);
    if role.account().is_empty() {
        return super::json(
            500,
            &json!({"Code": "Failure", "Message": "The role ARN is not valid."}),
        );
    }
    let issued = sim.cached_key(Cached::Uri, role.account(), KEY_LIFETIME);
    let mut body = issued.fields();
    body.insert("Code".into(), "Success".into());
    super::json(200, &Value::Object(body))
}

impl Simulator {
    /// Makes the credentials URI answer `500 {"Code":"Failure"}` (or
    /// answer normally again).
    pub fn set_credentials_uri_failing(&self, failing: bool) {
        self.state().credentials_uri_failing = failing;
    }
}
