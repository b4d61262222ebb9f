//! The tools the tests need beyond cargo, checked last (cargo runs test
//! targets by name, and this is the last one): without them the tests that
//! need them are skipped, every other target runs and reports, and this
//! target fails naming what is missing and how to get it.

mod support;

/// `policy diff` and `policy lint` drive cvc5; the README lists it as a
/// requirement of the tests.
#[test]
fn cvc5_is_installed() {
    assert!(
        support::solver_installed(),
        "cvc5 is not installed, so the policy diff and policy lint tests were skipped: \
         install it (`.ci/cvc5.sh`, or `apt-get install cvc5` on Debian and Ubuntu) or set CVC5 to its path"
    );
}
