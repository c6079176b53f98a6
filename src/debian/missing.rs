//! Why the mirror answered 404: the probes that turn a bare "HTTP 404" into an
//! honest message.
//!
//! A 404 means different things. For `dists/SUITE/InRelease` the suite does not
//! exist on that mirror (a typo, a suite not carried there): the mirror's
//! well-known suites are probed so the message can name what it does have. For an
//! index its signed Release lists, the mirror is mid-update only if it published
//! another Release since this run fetched one; otherwise it is incomplete. For a
//! locked `.deb`, the lock is stale when the suite's Release has moved on since
//! the lock was made (Debian removes superseded `.deb`s from its pool). Each probe
//! runs only after a 404, never on the happy path, and none of what a probe reads
//! is trusted for anything but the message: it is not verified.

use crate::debian::fetch::Mirror;

/// The aliases every Debian mirror serves as links to the current codenames
/// (what `debian-archive-keyring`-era Debian has); probed when a suite is not found.
const ALIASES: [&str; 5] = ["oldoldstable", "oldstable", "stable", "testing", "unstable"];

/// The suffixes of Debian's side suites: a missing `bookwrom-updates` is
/// answered with the `-updates` suites the mirror has.
const SIDE_SUITES: [&str; 4] = ["-proposed-updates", "-updates", "-security", "-backports"];

/// How much of a Release a probe reads: its `Codename` and `Date` come first.
const PEEK: u64 = 16 << 10;

/// A suite the mirror has, as a probe found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSuite {
    /// The alias probed (`stable`, `stable-updates`).
    pub alias: String,
    /// Its Release's `Codename` (`trixie`), when it names one.
    pub codename: Option<String>,
}

impl std::fmt::Display for KnownSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.codename {
            Some(c) => write!(f, "{c} ({})", self.alias),
            None => f.write_str(&self.alias),
        }
    }
}

/// The end of the message for a suite the mirror does not have.
pub(crate) fn unknown_suite_hint(known: &[KnownSuite], probed: &[String]) -> String {
    if known.is_empty() {
        format!(
            "nor does it have any of {}: is the mirror URL a Debian archive's root (like http://deb.debian.org/debian)?",
            probed.join(", ")
        )
    } else {
        let names: Vec<String> = known.iter().map(ToString::to_string).collect();
        format!(
            "it has {}; check the dist name (or `suites`) in images.toml",
            names.join(", ")
        )
    }
}

/// The end of the message for an index its Release lists that the mirror lacks:
/// mid-update only when the mirror has published another Release since.
pub(crate) fn index_missing_hint(now: &ReleaseNow) -> String {
    match now {
        ReleaseNow::Moved { date } => format!(
            "the mirror published a new Release{} after this run fetched its InRelease: it is \
             mid-update, run the command again in a few minutes",
            date.as_ref()
                .map(|d| format!(" (dated {d})"))
                .unwrap_or_default()
        ),
        ReleaseNow::Same => "its Release has not changed, so this is not an update in progress: \
             the mirror is incomplete, use another mirror"
            .to_string(),
        ReleaseNow::Unknown(why) => format!(
            "the mirror's Release could not be read again ({why}): try again later or use another mirror"
        ),
    }
}

/// Where a Release stands now compared with what was fetched or locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseNow {
    /// The mirror serves another InRelease now, dated so (when it says).
    Moved {
        /// Its `Date`.
        date: Option<String>,
    },
    /// The mirror still serves the same InRelease.
    Same,
    /// It could not be read (its own error).
    Unknown(String),
}

/// The `Date:` line of a Release or InRelease text (unverified: for messages).
fn date_of(text: &[u8]) -> Option<String> {
    field_of(text, "Date")
}

fn field_of(text: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(text).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

impl Mirror {
    /// The well-known suites the mirror has (side suites of `suite`'s kind when it
    /// is one), by probing `dists/ALIAS/Release` on threads; and every alias probed.
    pub(crate) fn known_suites(&self, suite: &str) -> (Vec<KnownSuite>, Vec<String>) {
        let suffix = SIDE_SUITES
            .iter()
            .find(|s| suite.ends_with(*s))
            .copied()
            .unwrap_or("");
        let probed: Vec<String> = ALIASES.iter().map(|a| format!("{a}{suffix}")).collect();
        let found: Vec<Option<KnownSuite>> = std::thread::scope(|s| {
            let handles: Vec<_> = probed
                .iter()
                .map(|alias| {
                    s.spawn(move || {
                        let url = format!("{}/dists/{alias}/Release", self.url());
                        let text = self.peek(&url, PEEK).ok()?;
                        Some(KnownSuite {
                            alias: alias.clone(),
                            codename: field_of(&text, "Codename"),
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
        (found.into_iter().flatten().collect(), probed)
    }

    /// Whether `dists/SUITE/InRelease` is still the one whose sha256 starts with
    /// `sha256_prefix` (hex, as `images.lock` keys an archive by 12 digits or a
    /// fetched Release by all 64).
    pub(crate) fn release_now(&self, suite: &str, sha256_prefix: &str) -> ReleaseNow {
        let url = format!("{}/dists/{suite}/InRelease", self.url());
        match self.get_unverified(&url) {
            Err(e) => ReleaseNow::Unknown(e.to_string()),
            Ok((text, sha256)) => {
                let hex = sha256.trim_start_matches("sha256:");
                let prefix = sha256_prefix.trim_start_matches("sha256:");
                if !prefix.is_empty() && hex.starts_with(&prefix.to_ascii_lowercase()) {
                    ReleaseNow::Same
                } else {
                    ReleaseNow::Moved {
                        date: date_of(&text),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_what_the_mirror_has_or_what_was_probed() {
        let known = [
            KnownSuite {
                alias: "stable".into(),
                codename: Some("trixie".into()),
            },
            KnownSuite {
                alias: "unstable".into(),
                codename: None,
            },
        ];
        let probed = vec!["stable".to_string(), "unstable".to_string()];
        assert_eq!(
            unknown_suite_hint(&known, &probed),
            "it has trixie (stable), unstable; check the dist name (or `suites`) in images.toml"
        );
        assert!(unknown_suite_hint(&[], &probed).contains("any of stable, unstable"));
        assert_eq!(
            date_of(b"Origin: Debian\nDate: Sat, 01 Jun 2024 10:00:00 UTC\n"),
            Some("Sat, 01 Jun 2024 10:00:00 UTC".into())
        );
    }
}
