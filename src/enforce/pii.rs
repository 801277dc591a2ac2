//! `pii-detector`: finds personal data in the text of a request and
//! redacts it (`[REDACTED:SSN]`) or blocks the request.
//!
//! Supported kinds: `email`, `phone`, `ssn`, `credit_card` (Luhn-checked),
//! `iban` (mod-97 checked), `ip_address` (IPv4). The catalog's other kinds
//! (`passport`, `address`, `name`, `date_of_birth`) need more than pattern
//! matching and are not detected here; `detect_patterns` absent means every
//! supported kind.
//!
//! The matchers are written by hand over bytes: every kind is ASCII, every
//! scan starts only at a word boundary and looks at most a few dozen bytes
//! ahead, so a scan is linear in the text whatever it holds (no
//! backtracking). Matches of all kinds are collected, overlaps resolved
//! (earliest, then longest, wins), and replaced in one pass.

use super::{ActionKind, ChatRequest, Verdict};
use crate::config::catalog::{PiiAction, PiiDetector, PiiPattern};
use std::{collections::BTreeMap, ops::Range};

/// The kinds this detector finds, in the order matches of equal extent are
/// preferred.
const SUPPORTED: [PiiPattern; 6] = [
    PiiPattern::CreditCard,
    PiiPattern::Iban,
    PiiPattern::Ssn,
    PiiPattern::Email,
    PiiPattern::Phone,
    PiiPattern::IpAddress,
];

/// A configured `pii-detector`.
#[derive(Debug, Clone)]
pub struct Detector {
    block: bool,
    kinds: Vec<PiiPattern>,
}

/// One detected value: where, and what kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: PiiPattern,
    pub span: Range<usize>,
}

impl Detector {
    pub fn new(settings: &PiiDetector) -> Detector {
        let kinds = match &settings.detect_patterns {
            None => SUPPORTED.to_vec(),
            Some(listed) => SUPPORTED
                .iter()
                .copied()
                .filter(|k| listed.contains(k))
                .collect(),
        };
        Detector {
            block: matches!(settings.action, Some(PiiAction::Block)),
            kinds,
        }
    }

    /// Redacts `request` in place (`redact`), or reports a block and leaves
    /// it alone. `None` when nothing was found.
    pub(super) fn screen(&self, request: &mut ChatRequest) -> Option<Verdict> {
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for text in request.texts_mut() {
            let found = find(text, &self.kinds);
            if found.is_empty() {
                continue;
            }
            for f in &found {
                *counts.entry(label(f.kind)).or_default() += 1;
            }
            if !self.block {
                *text = redact(text, &found);
            }
        }
        if counts.is_empty() {
            return None;
        }
        // NB: kinds and counts only: a detail is shown to the client and
        // kept in the audit log, so it must never repeat a value.
        let listed = counts
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ");
        Some(if self.block {
            Verdict {
                action: ActionKind::Blocked,
                detail: format!("personal data found: {listed}"),
            }
        } else {
            Verdict {
                action: ActionKind::Redacted,
                detail: format!("redacted {listed}"),
            }
        })
    }
}

/// The settings name of a kind (`credit_card`).
pub fn label(kind: PiiPattern) -> &'static str {
    match kind {
        PiiPattern::Email => "email",
        PiiPattern::Phone => "phone",
        PiiPattern::Ssn => "ssn",
        PiiPattern::CreditCard => "credit_card",
        PiiPattern::Iban => "iban",
        PiiPattern::IpAddress => "ip_address",
        PiiPattern::Passport => "passport",
        PiiPattern::Address => "address",
        PiiPattern::Name => "name",
        PiiPattern::DateOfBirth => "date_of_birth",
    }
}

/// `[REDACTED:CREDIT_CARD]`.
pub fn placeholder(kind: PiiPattern) -> String {
    format!("[REDACTED:{}]", label(kind).to_ascii_uppercase())
}

/// Every value of `kinds` in `text`, in order, without overlaps.
pub fn find(text: &str, kinds: &[PiiPattern]) -> Vec<Found> {
    let bytes = text.as_bytes();
    let mut all = Vec::new();
    // NB: every kind but email holds a digit, and email an `@`: one pass
    // over the text rules most kinds out of most prompts.
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_at = has_digit || bytes.contains(&b'@');
    for &kind in kinds {
        if !(has_digit || (kind == PiiPattern::Email && has_at)) {
            continue;
        }
        let matcher: fn(&[u8], usize) -> Option<usize> = match kind {
            PiiPattern::Email => email_at,
            PiiPattern::Phone => phone_at,
            PiiPattern::Ssn => ssn_at,
            PiiPattern::CreditCard => card_at,
            PiiPattern::Iban => iban_at,
            PiiPattern::IpAddress => ipv4_at,
            _ => continue,
        };
        let mut i = 0;
        while i < bytes.len() {
            match matcher(bytes, i) {
                Some(end) if end > i => {
                    all.push(Found { kind, span: i..end });
                    i = end;
                }
                _ => i += 1,
            }
        }
    }
    // Earliest first, then longest, then by preference (the order of
    // `kinds`, kept by the stable sort).
    all.sort_by(|a, b| {
        a.span
            .start
            .cmp(&b.span.start)
            .then(b.span.end.cmp(&a.span.end))
    });
    let mut kept: Vec<Found> = Vec::new();
    for found in all {
        if kept.last().is_none_or(|k| found.span.start >= k.span.end) {
            kept.push(found);
        }
    }
    kept
}

/// `text` with each found value replaced by its placeholder.
pub fn redact(text: &str, found: &[Found]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in found {
        out.push_str(&text[at..f.span.start]);
        out.push_str(&placeholder(f.kind));
        at = f.span.end;
    }
    out.push_str(&text[at..]);
    out
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// No letter or digit just before `i`.
fn starts_word(bytes: &[u8], i: usize) -> bool {
    i == 0 || !is_alnum(bytes[i - 1])
}

/// No letter or digit at `end`.
fn ends_word(bytes: &[u8], end: usize) -> bool {
    bytes.get(end).is_none_or(|b| !is_alnum(*b))
}

/// Digits from `i`: how many.
fn digits(bytes: &[u8], i: usize) -> usize {
    bytes[i.min(bytes.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count()
}

/// `local@domain.tld`, the domain with a dot and a TLD of 2+ letters.
fn email_at(bytes: &[u8], i: usize) -> Option<usize> {
    const MAX_LOCAL: usize = 64;
    const MAX_DOMAIN: usize = 253;
    let local = |b: u8| is_alnum(b) || b"._%+-".contains(&b);
    if !local(bytes[i]) || (i > 0 && local(bytes[i - 1])) {
        return None;
    }
    let at = i + bytes[i..]
        .iter()
        .take(MAX_LOCAL + 1)
        .take_while(|b| local(**b))
        .count();
    if at - i > MAX_LOCAL || bytes.get(at) != Some(&b'@') {
        return None;
    }
    let domain = |b: u8| is_alnum(b) || b == b'.' || b == b'-';
    let mut end = at
        + 1
        + bytes[at + 1..]
            .iter()
            .take(MAX_DOMAIN + 1)
            .take_while(|b| domain(**b))
            .count();
    while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let host = &bytes[at + 1..end];
    let dot = host.iter().rposition(|b| *b == b'.')?;
    let tld = &host[dot + 1..];
    (dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some(end)
}

/// `123-45-6789`, not area 000/666/9xx, group 00 or serial 0000.
fn ssn_at(bytes: &[u8], i: usize) -> Option<usize> {
    if !starts_word(bytes, i) || bytes.len() < i + 11 {
        return None;
    }
    let s = &bytes[i..i + 11];
    let shape = s.iter().enumerate().all(|(k, b)| match k {
        3 | 6 => *b == b'-',
        _ => b.is_ascii_digit(),
    });
    if !shape || !ends_word(bytes, i + 11) || bytes.get(i + 11) == Some(&b'-') {
        return None;
    }
    let (area, group, serial) = (&s[0..3], &s[4..6], &s[7..11]);
    let valid =
        area != b"000" && area != b"666" && area[0] != b'9' && group != b"00" && serial != b"0000";
    valid.then_some(i + 11)
}

/// 13 to 19 digits, optionally in groups split by one space or dash, that
/// pass the Luhn check.
fn card_at(bytes: &[u8], i: usize) -> Option<usize> {
    if !bytes[i].is_ascii_digit() || !starts_word(bytes, i) {
        return None;
    }
    let mut number = Vec::with_capacity(19);
    let mut at = i;
    let mut end = i;
    while at < bytes.len() && number.len() <= 19 {
        let b = bytes[at];
        if b.is_ascii_digit() {
            number.push(b - b'0');
            at += 1;
            end = at;
        } else if (b == b' ' || b == b'-') && bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
            at += 1;
        } else {
            break;
        }
    }
    ((13..=19).contains(&number.len()) && ends_word(bytes, end) && luhn(&number)).then_some(end)
}

/// The Luhn check digit test, over digit values.
pub fn luhn(number: &[u8]) -> bool {
    let sum: u32 = number
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            let d = u32::from(d);
            if k % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A country code, two check digits and 11 to 30 letters or digits
/// (uppercase), optionally in groups of four split by one space; the longest
/// prefix that passes the mod-97 check.
fn iban_at(bytes: &[u8], i: usize) -> Option<usize> {
    if !starts_word(bytes, i) || bytes.len() < i + 15 {
        return None;
    }
    let head = &bytes[i..i + 4];
    if !(head[0].is_ascii_uppercase()
        && head[1].is_ascii_uppercase()
        && head[2].is_ascii_digit()
        && head[3].is_ascii_digit())
    {
        return None;
    }
    let upper_alnum = |b: u8| b.is_ascii_digit() || b.is_ascii_uppercase();
    let mut chars = Vec::with_capacity(34);
    // (characters so far, end in bytes) where a match could end.
    let mut ends = Vec::new();
    let mut at = i;
    while at < bytes.len() && chars.len() < 34 {
        let b = bytes[at];
        if upper_alnum(b) {
            chars.push(b);
            at += 1;
            if !bytes.get(at).is_some_and(|b| upper_alnum(*b)) {
                ends.push((chars.len(), at));
            }
        } else if b == b' ' && bytes.get(at + 1).is_some_and(|b| upper_alnum(*b)) {
            at += 1;
        } else {
            break;
        }
    }
    if chars.len() == 34 {
        ends.push((34, at));
    }
    ends.into_iter()
        .rev()
        .filter(|(n, end)| (15..=34).contains(n) && ends_word(bytes, *end))
        .find(|(n, _)| mod97(&chars[..*n]))
        .map(|(_, end)| end)
}

/// The IBAN check: the first four characters moved to the end, letters as
/// 10–35, the number mod 97 is 1.
pub fn mod97(iban: &[u8]) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let mut rest = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rest = if value >= 10 {
            (rest * 100 + value) % 97
        } else {
            (rest * 10 + value) % 97
        };
    }
    rest == 1
}

/// `+CC …` with 8 to 15 digits, or a North American number with its
/// separators: `(555) 123-4567`, `555-123-4567`, `555.123.4567`,
/// `1 555 123 4567`. A bare run of digits is not taken for a phone number.
fn phone_at(bytes: &[u8], i: usize) -> Option<usize> {
    const MAX_LEN: usize = 24;
    let plus = bytes[i] == b'+';
    if !(plus || bytes[i] == b'(' || bytes[i].is_ascii_digit()) {
        return None;
    }
    if i > 0 && (is_alnum(bytes[i - 1]) || matches!(bytes[i - 1], b'+' | b'-' | b'.')) {
        return None;
    }
    let mut groups: Vec<usize> = Vec::new();
    let mut separators = 0;
    let mut at = i + usize::from(plus);
    let mut end = at;
    while at < bytes.len() && at - i <= MAX_LEN {
        let open = bytes[at] == b'(';
        let start = at + usize::from(open);
        let n = digits(bytes, start);
        if n == 0 {
            break;
        }
        at = start + n;
        if open {
            if bytes.get(at) != Some(&b')') {
                return None;
            }
            at += 1;
            separators += 1;
        }
        groups.push(n);
        end = at;
        match bytes.get(at) {
            Some(b' ' | b'-' | b'.')
                if bytes
                    .get(at + 1)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b'(') =>
            {
                at += 1;
                separators += 1;
            }
            _ => break,
        }
    }
    if end - i > MAX_LEN || !ends_word(bytes, end) {
        return None;
    }
    let total: usize = groups.iter().sum();
    let fits = if plus {
        (8..=15).contains(&total) && groups.iter().all(|g| *g <= 4 || groups.len() == 1)
    } else {
        separators > 0 && (groups == [3, 3, 4] || (groups == [1, 3, 3, 4] && bytes[i] == b'1'))
    };
    fits.then_some(end)
}

/// Four dot-separated numbers from 0 to 255.
fn ipv4_at(bytes: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (is_alnum(bytes[i - 1]) || bytes[i - 1] == b'.') {
        return None;
    }
    let mut at = i;
    for part in 0..4 {
        let n = digits(bytes, at);
        if n == 0 || n > 3 {
            return None;
        }
        let value: u32 = std::str::from_utf8(&bytes[at..at + n]).ok()?.parse().ok()?;
        if value > 255 || (n > 1 && bytes[at] == b'0') {
            return None;
        }
        at += n;
        if part < 3 {
            if bytes.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
    }
    let trailing_part =
        bytes.get(at) == Some(&b'.') && bytes.get(at + 1).is_some_and(u8::is_ascii_digit);
    (ends_word(bytes, at) && !trailing_part).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<PiiPattern> {
        SUPPORTED.to_vec()
    }

    fn redacted(text: &str) -> String {
        redact(text, &find(text, &all()))
    }

    #[test]
    fn each_kind_is_redacted_with_its_placeholder() {
        assert_eq!(
            redacted("mail jane.doe+x@example.co.uk."),
            "mail [REDACTED:EMAIL]."
        );
        assert_eq!(redacted("SSN 123-45-6789 ok"), "SSN [REDACTED:SSN] ok");
        assert_eq!(
            redacted("card 4111 1111 1111 1111, thanks"),
            "card [REDACTED:CREDIT_CARD], thanks"
        );
        assert_eq!(
            redacted("card 4111-1111-1111-1111"),
            "card [REDACTED:CREDIT_CARD]"
        );
        assert_eq!(
            redacted("IBAN DE89 3704 0044 0532 0130 00 please"),
            "IBAN [REDACTED:IBAN] please"
        );
        assert_eq!(
            redacted("IBAN GB82WEST12345698765432."),
            "IBAN [REDACTED:IBAN]."
        );
        assert_eq!(
            redacted("call (555) 123-4567 or +44 20 7946 0958"),
            "call [REDACTED:PHONE] or [REDACTED:PHONE]"
        );
        assert_eq!(
            redacted("ping 192.168.1.20 now"),
            "ping [REDACTED:IP_ADDRESS] now"
        );
    }

    #[test]
    fn luhn_and_mod97_reject_lookalikes() {
        // A 16-digit number that fails Luhn is not a card.
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        assert_eq!(
            redacted("order 4111 1111 1111 1112"),
            "order 4111 1111 1111 1112"
        );
        assert_eq!(redacted("id 1234567812345678"), "id 1234567812345678");
        // One check digit off.
        assert!(!mod97(b"DE88370400440532013000"));
        assert!(mod97(b"DE89370400440532013000"));
        assert_eq!(
            redacted("ref DE88 3704 0044 0532 0130 00"),
            "ref DE88 3704 0044 0532 0130 00"
        );
    }

    #[test]
    fn lookalikes_are_left_alone() {
        for text in [
            "version 1.2.3.4.5",
            "256.1.1.1",
            "on 2024-01-15 at 10:30",
            "000-12-3456 and 123-00-4567",
            "user@localhost",
            "5551234567",
            "SKU123-45-6789",
            "see 192.168.100.10a",
        ] {
            assert_eq!(redacted(text), text, "{text}");
        }
    }

    #[test]
    fn only_the_listed_kinds_are_looked_for() {
        let detector = Detector::new(&PiiDetector {
            action: Some(PiiAction::Redact),
            detect_patterns: Some(vec![PiiPattern::Ssn, PiiPattern::Passport]),
            pci_mode: None,
        });
        assert_eq!(detector.kinds, [PiiPattern::Ssn]);
        let text = "a@b.io 123-45-6789";
        assert_eq!(
            redact(text, &find(text, &detector.kinds)),
            "a@b.io [REDACTED:SSN]"
        );
    }

    #[test]
    fn scans_are_linear_on_hostile_text() {
        // NB: a ratio, not a deadline, so a loaded machine does not fail it:
        // four times the text takes about four times as long when the scan
        // is linear, sixteen when it is quadratic. The fastest of three runs
        // keeps out the noise of other work.
        let fastest = |text: &str| {
            (0..3)
                .map(|_| {
                    let started = std::time::Instant::now();
                    let _ = find(text, &all());
                    started.elapsed()
                })
                .min()
                .unwrap()
        };
        for piece in ["1-", "1 ", "a@", "+1 ", "DE89 ", "1.", "(1) "] {
            let small = fastest(&piece.repeat(20_000));
            let large = fastest(&piece.repeat(80_000));
            assert!(
                large < small * 10 + std::time::Duration::from_millis(20),
                "{piece:?}: 4× the text took {large:?} against {small:?}"
            );
        }
        // Non-ASCII text around a match keeps its characters.
        assert_eq!(redacted("é123-45-6789ü"), "é[REDACTED:SSN]ü");
        assert_eq!(redacted("é 123-45-6789 ü"), "é [REDACTED:SSN] ü");
    }
}
