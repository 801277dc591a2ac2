//! The commit-trailer parser the promotion gates read (any repository
//! author writes commit messages). Properties: no panic; what it reads as
//! a promotion, written back with `trailer::format` under a subject, reads
//! back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::promote::trailer;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = std::str::from_utf8(data) else {
        return;
    };
    let all = trailer::trailers(message);
    for t in &all {
        assert!(!t.key.is_empty() && !t.key.contains(':'), "{t:?}");
    }
    let Ok(Some(promotion)) = trailer::read(message) else {
        return;
    };
    assert_eq!(trailer::parse(message).as_ref(), Some(&promotion));
    let written = format!("Promote\n\n{}", trailer::format(&promotion));
    let mut expected = promotion.clone();
    // NB: a forced reason is written on one line, its spaces collapsed.
    expected.forced = expected
        .forced
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "));
    assert_eq!(
        trailer::read(&written),
        Ok(Some(expected)),
        "{message:?} written as {written:?}"
    );
});
