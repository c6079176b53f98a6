//! A suite's `Release` (the verified text of its `InRelease`): which arches and
//! components it publishes, how long it is valid, and the sha256 and size of every
//! index file, which is what makes a plain-HTTP mirror trustworthy once the
//! signature is checked.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::debian::deb822;

/// A parsed `Release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `Origin` (`Debian`).
    pub origin: Option<String>,
    /// `Suite` (`stable`, `oldstable`, `bookworm-updates`...).
    pub suite: Option<String>,
    /// `Codename` (`bookworm`).
    pub codename: Option<String>,
    /// `Date`: when the archive published this state.
    pub date: SystemTime,
    /// `Date` as the file writes it (what a lock records).
    pub date_text: String,
    /// `Valid-Until`, when the suite has one.
    pub valid_until: Option<SystemTime>,
    /// `Architectures`, in file order (`all` included when listed).
    pub architectures: Vec<String>,
    /// `Components`, in file order.
    pub components: Vec<String>,
    /// `Acquire-By-Hash: yes`: indexes can be fetched by digest, immune to a mirror
    /// updating between the `InRelease` and the index download.
    pub acquire_by_hash: bool,
    /// The `SHA256` list: path relative to `dists/SUITE/` -> digest and size.
    pub sha256: BTreeMap<String, FileEntry>,
}

/// One file of the `SHA256` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Lowercase hex, without a `sha256:` prefix (as Release writes it).
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// Why a Release was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Not deb822 at all.
    #[error("Release of {suite}: {source}")]
    Syntax {
        /// The suite, as requested.
        suite: String,
        /// Where and what.
        source: deb822::SyntaxError,
    },
    /// A field Debian always writes is missing or wrong.
    #[error("Release of {suite}: field {field}: {problem}")]
    Field {
        /// The suite, as requested.
        suite: String,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// `Valid-Until` has passed: a mirror (or an attacker) is serving a frozen archive.
    #[error("Release of {suite} expired on {valid_until} (now {now}): the mirror serves an outdated archive; use another mirror, or allow expired Release files if this is a snapshot you mean to use")]
    Expired {
        /// The suite.
        suite: String,
        /// `Valid-Until` as Debian writes dates.
        valid_until: String,
        /// The time it was checked at, same format.
        now: String,
    },
    /// An arch the suite does not publish.
    #[error("suite {suite} does not publish architecture {arch}; it has: {}", available.join(", "))]
    UnknownArch {
        /// The suite.
        suite: String,
        /// The arch asked for (Debian's name).
        arch: String,
        /// What `Architectures` lists.
        available: Vec<String>,
    },
    /// A component the suite does not publish.
    #[error("suite {suite} has no component {component}; it has: {}", available.join(", "))]
    UnknownComponent {
        /// The suite.
        suite: String,
        /// The component asked for.
        component: String,
        /// What `Components` lists.
        available: Vec<String>,
    },
    /// The Release lists no Packages index for a component and arch.
    #[error("Release of {suite} lists no {component}/binary-{arch}/Packages index (.xz, .gz or uncompressed)")]
    NoIndex {
        /// The suite.
        suite: String,
        /// The component.
        component: String,
        /// The arch.
        arch: String,
    },
}

impl Release {
    /// Parses verified Release text; `suite` (as requested) names it in errors.
    pub fn parse(text: &str, suite: &str) -> Result<Release, ReleaseError> {
        let field_err = |field: &'static str, problem: String| ReleaseError::Field {
            suite: suite.to_string(),
            field,
            problem,
        };
        let paragraphs = deb822::parse(text).map_err(|source| ReleaseError::Syntax {
            suite: suite.to_string(),
            source,
        })?;
        let p = match paragraphs.as_slice() {
            [p] => p,
            [] => return Err(field_err("Date", "the Release is empty".into())),
            more => {
                return Err(field_err(
                    "Date",
                    format!("a Release has one paragraph, this one has {}", more.len()),
                ))
            }
        };
        let owned = |name: &str| p.get(name).map(|v| v.trim().to_string());
        let date_text = owned("Date").ok_or_else(|| field_err("Date", "missing".into()))?;
        let date = parse_date(&date_text).ok_or_else(|| {
            field_err(
                "Date",
                format!("{date_text:?} is not a date like `Sat, 10 Aug 2024 09:11:12 UTC`"),
            )
        })?;
        let valid_until = match owned("Valid-Until") {
            None => None,
            Some(v) => Some(parse_date(&v).ok_or_else(|| {
                field_err(
                    "Valid-Until",
                    format!("{v:?} is not a date like `Sat, 17 Aug 2024 09:11:12 UTC`"),
                )
            })?),
        };
        let words = |name: &str| {
            p.get(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let mut sha256 = BTreeMap::new();
        for line in p.get("SHA256").unwrap_or("").lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let entry = match parts.as_slice() {
                [hash, size, path]
                    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    size.parse::<u64>().ok().map(|size| {
                        (
                            path.to_string(),
                            FileEntry {
                                sha256: hash.to_ascii_lowercase(),
                                size,
                            },
                        )
                    })
                }
                _ => None,
            };
            let (path, entry) = entry.ok_or_else(|| {
                field_err(
                    "SHA256",
                    format!("{line:?} is not `<64 hex digits> <size> <path>`"),
                )
            })?;
            sha256.insert(path, entry);
        }
        if sha256.is_empty() {
            return Err(field_err(
                "SHA256",
                "missing or empty: without it no index can be verified".into(),
            ));
        }
        Ok(Release {
            origin: owned("Origin"),
            suite: owned("Suite"),
            codename: owned("Codename"),
            date,
            date_text,
            valid_until,
            architectures: words("Architectures"),
            components: words("Components"),
            acquire_by_hash: owned("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            sha256,
        })
    }

    /// The suite's name for messages: `Codename`, else `Suite`, else `?`.
    pub fn name(&self) -> &str {
        self.codename
            .as_deref()
            .or(self.suite.as_deref())
            .unwrap_or("?")
    }

    /// Fails when `Valid-Until` is before `now`.
    pub fn check_valid(&self, now: SystemTime) -> Result<(), ReleaseError> {
        match self.valid_until {
            Some(until) if until < now => Err(ReleaseError::Expired {
                suite: self.name().to_string(),
                valid_until: format_date(until),
                now: format_date(now),
            }),
            _ => Ok(()),
        }
    }

    /// Fails when `arch` (Debian's name: `amd64`, `arm64`...) is not in
    /// `Architectures`, naming the ones that are.
    pub fn check_arch(&self, arch: &str) -> Result<(), ReleaseError> {
        if self.architectures.iter().any(|a| a == arch) {
            Ok(())
        } else {
            Err(ReleaseError::UnknownArch {
                suite: self.name().to_string(),
                arch: arch.to_string(),
                available: self
                    .architectures
                    .iter()
                    .filter(|a| *a != "all")
                    .cloned()
                    .collect(),
            })
        }
    }

    /// The Packages index of `component` and `arch` to fetch: `.xz`, else `.gz`, else
    /// uncompressed, by what the `SHA256` list holds. Returns its path relative to
    /// `dists/SUITE/` and its entry.
    pub fn packages_index(
        &self,
        component: &str,
        arch: &str,
    ) -> Result<(&str, &FileEntry), ReleaseError> {
        self.check_arch(arch)?;
        // debian-security lists `updates/main` for what sources.list calls `main`
        // (and its indexes under `main/`): apt matches the last part, so do we.
        let listed = |c: &String| c == component || c.rsplit('/').next() == Some(component);
        if !self.components.is_empty() && !self.components.iter().any(listed) {
            return Err(ReleaseError::UnknownComponent {
                suite: self.name().to_string(),
                component: component.to_string(),
                available: self.components.clone(),
            });
        }
        for ext in [".xz", ".gz", ""] {
            let path = format!("{component}/binary-{arch}/Packages{ext}");
            if let Some((p, e)) = self.sha256.get_key_value(&path) {
                return Ok((p.as_str(), e));
            }
        }
        Err(ReleaseError::NoIndex {
            suite: self.name().to_string(),
            component: component.to_string(),
            arch: arch.to_string(),
        })
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Parses a Release date: RFC 2822 as dak and apt-ftparchive write it
/// (`Sat, 10 Aug 2024 09:11:12 UTC`), also with `GMT`, `Z` or a numeric zone
/// (`+0000`, `-0130`), a one-digit day, no weekday, or no seconds. The weekday, when
/// given, is not checked (apt does not either).
pub fn parse_date(text: &str) -> Option<SystemTime> {
    let mut rest = text.trim();
    if let Some((head, tail)) = rest.split_once(',') {
        if !head.trim().chars().all(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        rest = tail;
    }
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, zone @ ..] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    let year: i64 = year.parse().ok().filter(|y| (1970..=9999).contains(y))?;
    let hms: Vec<&str> = time.split(':').collect();
    let num = |s: &str, max: u32| s.parse::<u32>().ok().filter(|v| *v <= max);
    let (h, m, s) = match hms.as_slice() {
        [h, m] => (num(h, 23)?, num(m, 59)?, 0),
        [h, m, s] => (num(h, 23)?, num(m, 59)?, num(s, 60)?),
        _ => return None,
    };
    let offset: i64 = match zone {
        [] => 0,
        [z] if ["UTC", "GMT", "UT", "Z"]
            .iter()
            .any(|u| u.eq_ignore_ascii_case(z)) =>
        {
            0
        }
        [z] if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let hh: i64 = z[1..3].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            let v = hh * 3600 + mm * 60;
            if z.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + s) - offset;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Formats a time as Debian writes Release dates: `Sat, 10 Aug 2024 09:11:12 UTC`.
pub fn format_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} UTC",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn dates_as_debian_writes_them() {
        // date -u -d 'Sat, 10 Aug 2024 09:11:12 UTC' +%s
        let want = 1_723_281_072;
        for text in [
            "Sat, 10 Aug 2024 09:11:12 UTC",
            "Sat, 10 Aug 2024 09:11:12 GMT",
            "Sat, 10 Aug 2024 09:11:12 +0000",
            "Sat, 10 Aug 2024 11:11:12 +0200",
            "10 Aug 2024 09:11:12 UTC",
            " Sat,  10 Aug 2024 09:11:12 UTC ",
        ] {
            assert_eq!(parse_date(text).map(secs), Some(want), "{text}");
        }
        assert_eq!(
            parse_date("Thu, 1 Feb 2024 00:00 UTC").map(secs),
            Some(1_706_745_600)
        );
        assert_eq!(
            format_date(UNIX_EPOCH + Duration::from_secs(want)),
            "Sat, 10 Aug 2024 09:11:12 UTC"
        );
        assert_eq!(
            format_date(UNIX_EPOCH + Duration::from_secs(1_709_164_800)),
            "Thu, 29 Feb 2024 00:00:00 UTC"
        );
        for bad in [
            "",
            "Sat, 10 Foo 2024 09:11:12 UTC",
            "Sat, 32 Aug 2024 09:11:12 UTC",
            "Sat, 10 Aug 2024 25:11:12 UTC",
            "Sat, 10 Aug 2024 09:11:12 CEST",
            "2024-08-10T09:11:12Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    const SAMPLE: &str = "Origin: Debian\nSuite: stable\nCodename: bookworm\n\
Date: Sat, 10 Aug 2024 09:11:12 UTC\nValid-Until: Sat, 17 Aug 2024 09:11:12 UTC\n\
Acquire-By-Hash: yes\nArchitectures: all amd64 arm64\nComponents: main contrib\n\
SHA256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 123 main/binary-amd64/Packages.gz\n \
fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210   45 main/binary-amd64/Packages.xz\n \
1111111111111111111111111111111111111111111111111111111111111111 9 main/binary-arm64/Packages\n";

    #[test]
    fn parses_fields_and_picks_the_best_index() {
        let r = Release::parse(SAMPLE, "bookworm").unwrap();
        assert_eq!(r.codename.as_deref(), Some("bookworm"));
        assert!(r.acquire_by_hash);
        assert_eq!(r.architectures, ["all", "amd64", "arm64"]);
        assert_eq!(r.components, ["main", "contrib"]);
        let (path, entry) = r.packages_index("main", "amd64").unwrap();
        assert_eq!(path, "main/binary-amd64/Packages.xz");
        assert_eq!(entry.size, 45);
        let (path, _) = r.packages_index("main", "arm64").unwrap();
        assert_eq!(path, "main/binary-arm64/Packages");
        let err = r.packages_index("main", "riscv64").unwrap_err();
        assert_eq!(
            err.to_string(),
            "suite bookworm does not publish architecture riscv64; it has: amd64, arm64"
        );
        assert!(matches!(
            r.packages_index("contrib", "amd64"),
            Err(ReleaseError::NoIndex { .. })
        ));
        let until = parse_date("Sat, 17 Aug 2024 09:11:12 UTC").unwrap();
        r.check_valid(until).unwrap();
        let err = r.check_valid(until + Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Release of bookworm expired on Sat, 17 Aug 2024 09:11:12 UTC"),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_release_without_date_or_sha256() {
        let no_date = SAMPLE.replace("Date: Sat, 10 Aug 2024 09:11:12 UTC\n", "");
        assert!(Release::parse(&no_date, "x").is_err());
        let no_sums = &SAMPLE[..SAMPLE.find("SHA256:").unwrap()];
        assert!(Release::parse(no_sums, "x").is_err());
        let bad_line = SAMPLE.replace(" 45 ", " forty-five ");
        assert!(Release::parse(&bad_line, "x").is_err());
    }
}
