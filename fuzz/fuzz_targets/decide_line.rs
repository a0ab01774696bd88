//! Any bytes as a `berth policy decide` line: never a panic, exactly one answer line,
//! and the same answer when the line is decided again (with policies now cached).
#![no_main]

use berth_iam::lines::Decider;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if line.contains('\n') {
        return;
    }
    let mut decider = Decider::new();
    let mut first = String::new();
    decider.decide_line(line, &mut first);
    assert!(
        first.ends_with('\n') && first.matches('\n').count() == 1,
        "{first:?}"
    );
    assert!(
        berth_iam::json::parse(first.trim_end()).is_ok(),
        "answer is not JSON: {first}"
    );
    let mut second = String::new();
    decider.decide_line(line, &mut second);
    assert_eq!(first, second);
});
