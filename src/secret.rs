//! Comparing secrets (API tokens, session ids, CSRF tokens, webhook
//! secrets, gateway tokens): in time that does not depend on where they
//! first differ, so an attacker cannot learn a secret a byte at a time.

/// Whether `a` and `b` are the same bytes, in constant time for a given
/// length (the length itself is not secret: hashes and tokens have fixed
/// or public lengths).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_and_the_length_are() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokeN"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(constant_time_eq(b"", b""));
    }
}
