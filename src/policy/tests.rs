//! Unit tests of the catalogue and schema agreement; the decision tables
//! over the shipped policies are in tests/policy.rs.

use super::catalogue;

#[test]
fn schema_holds_the_catalogues_actions() {
    let schema = include_str!("../../policies/schema.cedarschema");
    let expected = catalogue::schema_actions();
    assert!(
        schema.contains(&expected),
        "policies/schema.cedarschema must contain, verbatim:\n{expected}"
    );
}
