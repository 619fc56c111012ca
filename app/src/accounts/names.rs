//! Usernames: one spelling per person, whatever the case, the Unicode form or
//! the script mix a look-alike would need.
//!
//! - A username is taken in NFKC (fullwidth `ａｎａ` is `ana`).
//! - It is 3 to 32 letters or digits of one script (Latin may mix with Han,
//!   Hiragana, Katakana or Hangul, as UTS #39 "highly restrictive" allows),
//!   `_`, `.` or `-`, starting with a letter or digit. Characters UTS #39
//!   restricts from identifiers (invisible, format and control characters,
//!   spaces of every width, obsolete scripts) are refused, and so is a Latin
//!   name with one Cyrillic letter in it.
//! - Its **key**, NFKC of the case-folded NFKC form, is what must be unique:
//!   `Ana`, `ANA` and `ａｎａ` are one username.

use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

use crate::error::Error;

/// Longest username in characters.
const MAX_CHARS: usize = 32;
/// Shortest username in characters.
const MIN_CHARS: usize = 3;

/// A username as it is stored and shown (NFKC), with its unique key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    /// The name as typed, in NFKC.
    pub name: String,
    /// The key that must be unique: NFKC + case fold.
    pub key: String,
}

/// The unique key of any name or identity: NFKC, case folded, NFKC again.
/// Also the key an app-minted identity is compared by.
pub fn key(s: &str) -> String {
    let nfkc: String = s.nfkc().collect();
    caseless::default_case_fold_str(&nfkc).nfkc().collect()
}

fn allowed_char(c: char) -> bool {
    (c.is_alphanumeric() && c.identifier_allowed()) || matches!(c, '_' | '.' | '-')
}

/// Checks a username a person chose; returns it normalized, with its key.
pub fn username(raw: &str) -> Result<Username, Error> {
    let name: String = raw.nfkc().collect();
    let chars = name.chars().count();
    let ok = (MIN_CHARS..=MAX_CHARS).contains(&chars)
        && name.chars().all(allowed_char)
        && name.chars().next().is_some_and(char::is_alphanumeric)
        && name
            .as_str()
            .check_restriction_level(RestrictionLevel::HighlyRestrictive);
    if !ok {
        return Err(Error::invalid(
            "username must be 3-32 letters or digits of one script, '_', '.' or '-', starting with a letter or digit",
        ));
    }
    let key = key(&name);
    Ok(Username { name, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass_and_keep_their_case() {
        for ok in [
            "ana",
            "a.b-c_d",
            "A1234567890123456789012345678901",
            "María",
            "Ærøskøbing",
            "Ελένη",
            "Дмитрий",
            "山田太郎",
            "tanaka_たなか",
            "김민수",
        ] {
            let u = username(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(u.name, ok);
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "ab",
            "_ana",
            "ana maría",
            "a/b",
            "",
            "ana\u{200b}",                       // zero-width space
            "an\u{200d}a",                       // zero-width joiner
            "ana\u{202e}",                       // right-to-left override
            "ana\u{00a0}x",                      // no-break space
            "ana\u{3000}x",                      // ideographic space
            "ana\u{0007}",                       // control
            "\u{0430}lice",                      // Cyrillic а among Latin letters
            "paypal\u{0430}",                    // ditto at the end
            "a\u{0301}\u{0301}\u{0301}\u{0301}", // stacked combining marks
            "abcdefghijklmnopqrstuvwxyz0123456", // 33
        ] {
            assert!(username(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn one_key_per_spelling() {
        let k = |s: &str| username(s).expect(s).key;
        assert_eq!(k("Ana"), k("ana"));
        assert_eq!(k("ANA"), k("ana"));
        assert_eq!(k("ａｎａ"), k("ana")); // fullwidth
        assert_eq!(username("ａｎａ").expect("fullwidth").name, "ana");
        assert_eq!(k("Straße"), k("STRASSE"));
        assert_eq!(k("María"), k("MARI\u{0301}A")); // composed and decomposed
        assert_eq!(k("ΣΟΦΙΑ"), k("σοφια"));
        assert_ne!(k("ana"), k("anna"));
        assert_eq!(key("App-User"), key("app-user"));
    }
}
