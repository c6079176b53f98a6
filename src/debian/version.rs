//! Debian package versions, `[epoch:]upstream[-revision]`, ordered exactly as
//! dpkg orders them (`lib/dpkg/version.c`, Debian Policy 5.6.12).
//!
//! The order is not the string order and not semver: epochs first, then the
//! upstream part and the revision each compared by alternating runs of
//! non-digits (letters sort before other characters, `~` before everything,
//! even the end of the string) and digits (numerically, leading zeros ignored).
//! An absent revision compares as `0`, an absent epoch as `0`. Equality is that
//! order's equality: `1.0`, `0:1.0`, `1.0-0` and `1.00` are all equal, so a
//! `Version` keeps the text it was written as for [`Display`](fmt::Display)
//! while `==` follows dpkg.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A parsed Debian version.
#[derive(Debug, Clone)]
pub struct Version {
    /// The text as written (trimmed), shown by `Display`.
    text: String,
    epoch: u32,
    /// Byte range of the upstream version inside `text`.
    upstream: (usize, usize),
    /// Byte range of the revision inside `text` (empty when absent).
    revision: (usize, usize),
}

/// Why a version string is not a Debian version; worded like dpkg's own messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad version {text:?}: {problem}")]
pub struct VersionError {
    /// The text that was parsed.
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl Version {
    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0..self.upstream.1]
    }

    /// The Debian revision (`""` when absent, which compares as `"0"`).
    pub fn revision(&self) -> &str {
        &self.text[self.revision.0..self.revision.1]
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Version {
    type Err = VersionError;

    /// Parses as dpkg's `parseversion` does: the epoch is everything before the
    /// first `:`, the revision everything after the last `-`. Rejects what dpkg
    /// rejects (empty parts, a non-numeric epoch, spaces, characters outside
    /// `[A-Za-z0-9.+~-:]`); an upstream part not starting with a digit is only a
    /// warning in dpkg and is accepted here too, so such versions still compare.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let err = |problem| VersionError {
            text: text.to_string(),
            problem,
        };
        if text.is_empty() {
            return Err(err("version string is empty"));
        }
        if text.contains(char::is_whitespace) {
            return Err(err("version string has embedded spaces"));
        }
        let (epoch, start) = match text.find(':') {
            Some(colon) => {
                let e = &text[..colon];
                if e.is_empty() {
                    return Err(err("epoch in version is empty"));
                }
                if !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch in version is not number"));
                }
                let epoch = e
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n <= i32::MAX as u32)
                    .ok_or_else(|| err("epoch in version is too big"))?;
                (epoch, colon + 1)
            }
            None => (0, 0),
        };
        let (upstream, revision) = match text[start..].rfind('-') {
            Some(dash) => {
                let dash = start + dash;
                if dash + 1 == text.len() {
                    return Err(err("revision number is empty"));
                }
                ((start, dash), (dash + 1, text.len()))
            }
            None => ((start, text.len()), (text.len(), text.len())),
        };
        let up = &text[upstream.0..upstream.1];
        if up.is_empty() {
            return Err(err("version number is empty"));
        }
        if !up
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+.~:".contains(&b))
        {
            return Err(err("invalid character in version number"));
        }
        if !text[revision.0..revision.1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.~".contains(&b))
        {
            return Err(err("invalid character in revision number"));
        }
        Ok(Version {
            text: text.to_string(),
            epoch,
            upstream,
            revision,
        })
    }
}

impl fmt::Display for Version {
    /// The version as it was written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream(), other.upstream()))
            .then_with(|| verrevcmp(self.revision(), other.revision()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    /// dpkg's equality (`1.0 == 0:1.0 == 1.0-0`), not the text's.
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// The weight of one non-digit character: `~` below the end of the string (0),
/// letters by ASCII, everything else after all letters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn parts_and_display() {
        let x = v("1:2.36-9+deb12u4");
        assert_eq!(
            (x.epoch(), x.upstream(), x.revision()),
            (1, "2.36", "9+deb12u4")
        );
        assert_eq!(x.to_string(), "1:2.36-9+deb12u4");
        let y = v("2.0-rc1-3");
        assert_eq!((y.upstream(), y.revision()), ("2.0-rc1", "3"));
        let z = v("7.4");
        assert_eq!((z.epoch(), z.upstream(), z.revision()), (0, "7.4", ""));
    }

    #[test]
    fn dpkg_order() {
        let lt = [
            ("1.0~rc1", "1.0"),
            ("1.0~~", "1.0~"),
            ("1.0~", "1.0"),
            ("1.0", "1.0a"),
            ("1.0a", "1.0+"),
            ("1.0+", "1.0.1"),
            ("1.9", "1.10"),
            ("1.0-1", "1.0-1.1"),
            ("1.0-1~bpo1", "1.0-1"),
            ("9.9", "1:0.1"),
            ("2.36-9+deb12u3", "2.36-9+deb12u10"),
            ("1.0", "1.0-0.1"),
            ("a", "b"),
            ("1.0-Z", "1.0-a"),
        ];
        for (a, b) in lt {
            assert_eq!(v(a).cmp(&v(b)), Ordering::Less, "{a} < {b}");
            assert_eq!(v(b).cmp(&v(a)), Ordering::Greater, "{b} > {a}");
        }
        for (a, b) in [
            ("1.0", "1.0-0"),
            ("0:1.0", "1.0"),
            ("1.00", "1.0"),
            ("1.01", "1.1"),
        ] {
            assert_eq!(v(a), v(b), "{a} == {b}");
        }
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        for bad in [
            "", " ", "1.0 2", ":1.0", "a:1.0", "1:", "1.0-", "1.0_1", "1.0-1:2", "1:-1",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(v(" 1.0 ").to_string(), "1.0");
    }
}
