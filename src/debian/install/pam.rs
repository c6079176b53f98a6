//! What `pam-auth-update --package --force` leaves on a first install
//! (libpam-runtime's postinst): `/etc/pam.d/common-{auth,account,password,
//! session,session-noninteractive}` filled in from the templates in
//! `/usr/share/pam/` with every `Default: yes` profile of `/usr/share/pam-configs/`,
//! and its saved state in `/var/lib/pam/` (`seen` and one file per type).
//! Without them `su`, `login` and `runuser -l` find no PAM stack.
//!
//! A port of the Perl script's `parse_pam_profile`, `create_from_template`,
//! `merge_one_line` and `write_profiles` for a fresh system (no earlier config to
//! diff against, no debconf answer): the same profile order (priority, then
//! name, both descending), the same `end` jump counts, the same spacing
//! (including the blank `pam_unix.so ` option list's trailing space).

use std::collections::BTreeMap;

use super::{Node, Tree};

/// The PAM management types, in the order pam-auth-update writes them.
const TYPES: [&str; 5] = [
    "auth",
    "account",
    "password",
    "session",
    "session-noninteractive",
];

/// Modules pam-auth-update refuses to configure (a profile naming one is dropped).
const INVALID_MODULES: [&str; 1] = ["pam_tally"];

/// One `/usr/share/pam-configs/` profile: its file name and fields.
struct Profile {
    name: String,
    fields: BTreeMap<String, String>,
}

impl Profile {
    fn get(&self, field: &str) -> &str {
        self.fields.get(field).map_or("", String::as_str)
    }

    fn priority(&self) -> i64 {
        // Perl's `<=>` reads the leading number, 0 when there is none.
        let p = self.get("Priority").trim();
        let end = p
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(p.len(), |(i, _)| i);
        p[..end].parse().unwrap_or(0)
    }

    /// `lines_for_module_and_type`: the `-Initial` lines for the first module
    /// of a block, when the profile has them.
    fn lines(&self, uctype: &str, position: usize) -> &str {
        let initial = self.get(&format!("{uctype}-Initial"));
        if position == 0 && perl_true(initial) {
            initial
        } else {
            self.get(uctype)
        }
    }
}

fn perl_true(s: &str) -> bool {
    !s.is_empty() && s != "0"
}

/// `parse_pam_profile`, line for line.
fn parse(name: &str, text: &str) -> Option<Profile> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    let mut disabled = false;
    for line in text.split_inclusive('\n') {
        // /^(\S+):\s+(.*)\s*$/
        let header = line.find(':').filter(|&colon| {
            colon > 0
                && !line[..colon].contains(char::is_whitespace)
                && line[colon + 1..].starts_with(char::is_whitespace)
        });
        if let Some(colon) = header {
            current = line[..colon]
                .strip_suffix("-Final")
                .unwrap_or(&line[..colon])
                .to_string();
            let value = line[colon + 1..].trim_start();
            let value = value.split('\n').next().unwrap_or("");
            fields.insert(current.clone(), value.to_string());
        } else {
            let line = line.trim();
            let value = fields.entry(current.clone()).or_default();
            if !line.is_empty() {
                value.push('\n');
                value.push_str(line);
            }
            if INVALID_MODULES.iter().any(|m| value.contains(m)) {
                disabled = true;
            }
            *value = value.trim_start().to_string();
        }
    }
    if disabled {
        return None;
    }
    if !fields.contains_key("Session-Interactive-Only") {
        for (to, from) in [
            ("Session-noninteractive-Type", "Session-Type"),
            ("Session-noninteractive", "Session"),
            ("Session-noninteractive-Initial", "Session-Initial"),
        ] {
            if let Some(v) = fields.get(from).cloned() {
                fields.insert(to.to_string(), v);
            }
        }
    }
    Some(Profile {
        name: name.to_string(),
        fields,
    })
}

/// `merge_one_line` with no local edits: the control field and module, `end`
/// replaced by the lines left in the block, then the options single-spaced.
fn merge_one_line(line: &str, count: i64) -> String {
    let line = line.trim_start();
    // /^((\[[^]]+\]|\w+)\s+\S+)\s*(.*)/
    let control_end = if line.starts_with('[') {
        line.find(']').map_or(line.len(), |i| i + 1)
    } else {
        line.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(line.len())
    };
    let after_control = &line[control_end..];
    let ws = after_control.len() - after_control.trim_start().len();
    let module_start = control_end + ws;
    let module_end = line[module_start..]
        .find(char::is_whitespace)
        .map_or(line.len(), |i| module_start + i);
    let modline = line[..module_end].replace("end", &count.to_string());
    let opts: Vec<&str> = line[module_end..].split_whitespace().collect();
    format!("{modline} {}\n", opts.join(" "))
}

/// `create_from_template` for one type, or `None` when the template lacks a marker.
fn fill(template: &str, kind: &str, enabled: &[&Profile]) -> Option<String> {
    let uctype = ucfirst(kind);
    let short = kind.trim_end_matches("-noninteractive");
    let type_of = |p: &Profile| p.get(&format!("{uctype}-Type")).to_string();
    let mut out = String::new();
    let mut state = 0;
    for line in template.split_inclusive('\n') {
        if state == 1 || state == 3 {
            let end = if state == 1 {
                "# here's the fallback if no module succeeds"
            } else {
                "# end of pam-auth-update config"
            };
            if line.starts_with(end) {
                out.push_str(line);
                state += 1;
            }
            continue;
        }
        out.push_str(line);
        let (marker, block) = match state {
            0 => (
                "# here are the per-package modules (the \"Primary\" block)",
                "Primary",
            ),
            2 => (
                "# and here are more per-package modules (the \"Additional\" block)",
                "Additional",
            ),
            _ => continue,
        };
        if !line.starts_with(marker) {
            continue;
        }
        let members: Vec<&&Profile> = enabled.iter().filter(|p| type_of(p) == block).collect();
        let mut count: i64 = members
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.lines(&uctype, i)
                    .split('\n')
                    .filter(|l| !l.is_empty())
                    .count() as i64
            })
            .sum();
        if block == "Additional" {
            count -= 1;
        }
        if block == "Primary" && count == 0 {
            out.push_str(&format!("{short}\t[default=1]\t\t\tpam_permit.so\n"));
        }
        for (i, p) in members.iter().enumerate() {
            let lines = p.lines(&uctype, i);
            let lines = lines.trim_end_matches('\n');
            if lines.is_empty() {
                continue;
            }
            for l in lines.split('\n') {
                out.push_str(short);
                out.push('\t');
                out.push_str(&merge_one_line(l, count));
                count -= 1;
            }
        }
        state += 1;
    }
    (state >= 4).then_some(out)
}

/// The saved config of `write_profiles`: the Primary (or untyped) modules,
/// a `null` permit when there is none, then the Additional ones.
fn saved(kind: &str, enabled: &[&Profile]) -> String {
    let uctype = ucfirst(kind);
    let mut out = String::new();
    for (skip, first) in [("Additional", true), ("Primary", false)] {
        let mut i = 0;
        for p in enabled {
            let t = p.get(&format!("{uctype}-Type"));
            if t.is_empty() || t == skip {
                continue;
            }
            let lines = p.lines(&uctype, i);
            i += 1;
            if perl_true(lines) {
                out.push_str(&format!("Module: {}\n{lines}\n", p.name));
            }
        }
        if first && i == 0 {
            out.push_str("Module: null\n[default=1]\t\t\tpam_permit.so\n");
        }
    }
    out
}

fn ucfirst(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Writes what pam-auth-update would, when libpam-runtime is installed.
pub(super) fn pam_auth_update(tree: &mut Tree<'_>) {
    if !tree.has("usr/sbin/pam-auth-update") {
        return;
    }
    let dir = b"usr/share/pam-configs/".to_vec();
    let files: Vec<Vec<u8>> = tree
        .nodes
        .range(dir.clone()..)
        .take_while(|(k, _)| k.starts_with(&dir))
        .filter(|(k, n)| {
            !k[dir.len()..].contains(&b'/') && matches!(n.kind, crate::rootfs::EntryKind::File)
        })
        .map(|(k, _)| k.clone())
        .collect();
    let mut profiles: Vec<Profile> = Vec::new();
    for f in files {
        let name = String::from_utf8_lossy(&f[dir.len()..]).into_owned();
        if name.ends_with('~') || (name.starts_with('#') && name.ends_with('#') && name.len() > 1) {
            continue;
        }
        let text = String::from_utf8_lossy(&tree.read(&f).unwrap_or_default()).into_owned();
        profiles.extend(parse(&name, &text));
    }
    // sort { $b->{Priority} <=> $a->{Priority} || $b cmp $a }
    profiles.sort_by(|a, b| b.priority().cmp(&a.priority()).then(b.name.cmp(&a.name)));
    let enabled: Vec<&Profile> = profiles
        .iter()
        .filter(|p| p.get("Default") == "yes")
        .collect();

    let mut written = Vec::new();
    for kind in TYPES {
        let Some(template) = tree.read(format!("usr/share/pam/common-{kind}").as_bytes()) else {
            return;
        };
        let Some(config) = fill(&String::from_utf8_lossy(&template), kind, &enabled) else {
            return;
        };
        written.push((kind, config, saved(kind, &enabled)));
    }
    if !tree.has("var/lib/pam") {
        tree.put("var/lib/pam", Node::dir(0o755));
    }
    let seen: String = profiles.iter().map(|p| format!("{}\n", p.name)).collect();
    tree.put("var/lib/pam/seen", Node::file(0o644, seen.into_bytes()));
    for (kind, config, state) in written {
        tree.put(
            &format!("etc/pam.d/common-{kind}"),
            Node::file(0o644, config.into_bytes()),
        );
        tree.put(
            &format!("var/lib/pam/{kind}"),
            Node::file(0o644, state.into_bytes()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIX: &str = "Name: Unix authentication\nDefault: yes\nPriority: 256\nAuth-Type: Primary\nAuth:\n\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass\nAuth-Initial:\n\t[success=end default=ignore]\tpam_unix.so nullok\nAccount-Type: Primary\nAccount:\n\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so\nSession-Type: Additional\nSession:\n\trequired\tpam_unix.so\n";

    #[test]
    fn a_profile_parses_as_the_perl_script_reads_it() {
        let p = parse("unix", UNIX).unwrap();
        assert_eq!(p.priority(), 256);
        assert_eq!(
            p.lines("Auth", 0),
            "[success=end default=ignore]\tpam_unix.so nullok"
        );
        assert_eq!(
            p.lines("Auth", 1),
            "[success=end default=ignore]\tpam_unix.so nullok try_first_pass"
        );
        assert_eq!(p.get("Session-noninteractive"), "required\tpam_unix.so");
        assert!(parse("t", "Name: t\nAuth:\n\trequired pam_tally.so\n").is_none());
    }

    #[test]
    fn jumps_count_the_lines_left_and_an_empty_option_list_keeps_its_space() {
        assert_eq!(
            merge_one_line(
                "[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so",
                1
            ),
            "[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so \n"
        );
        assert_eq!(
            merge_one_line("required\tpam_unix.so  a   b", 0),
            "required\tpam_unix.so a b\n"
        );
    }

    #[test]
    fn a_template_is_filled_between_its_markers() {
        let unix = parse("unix", UNIX).unwrap();
        let template = "# head\n# here are the per-package modules (the \"Primary\" block)\n$x\n# here's the fallback if no module succeeds\nauth\trequisite\t\t\tpam_deny.so\n# and here are more per-package modules (the \"Additional\" block)\n$y\n# end of pam-auth-update config\n";
        let out = fill(template, "auth", &[&unix]).unwrap();
        assert_eq!(
            out,
            "# head\n# here are the per-package modules (the \"Primary\" block)\nauth\t[success=1 default=ignore]\tpam_unix.so nullok\n# here's the fallback if no module succeeds\nauth\trequisite\t\t\tpam_deny.so\n# and here are more per-package modules (the \"Additional\" block)\n# end of pam-auth-update config\n"
        );
        let out = fill(template, "session", &[&unix]).unwrap();
        assert!(
            out.contains("(the \"Primary\" block)\nsession\t[default=1]\t\t\tpam_permit.so\n"),
            "{out}"
        );
        assert!(
            out.contains("block)\nsession\trequired\tpam_unix.so \n# end"),
            "{out}"
        );
        assert!(fill("no markers\n", "auth", &[&unix]).is_none());
        assert_eq!(
            saved("session", &[&unix]),
            "Module: null\n[default=1]\t\t\tpam_permit.so\nModule: unix\nrequired\tpam_unix.so\n"
        );
    }
}
