//! The walk and the classes on small scripts: what a first install reaches.

use super::*;

/// The findings of `postinst` (run as `configure`) of package `pkg` in `set`,
/// as `line: command`.
fn postinst(pkg: &str, text: &str, set: &PackageSet) -> Vec<String> {
    let facts = Recorder {
        set,
        asked: RefCell::new(BTreeMap::new()),
    };
    walk(pkg, "postinst", text, &["postinst", "configure"], &facts)
        .into_iter()
        .map(|f| format!("{}: {}", f.line, f.command))
        .collect()
}

#[test]
fn case_on_dollar_one_takes_the_configure_branch_only() {
    let set = PackageSet::default();
    let text = "#!/bin/sh\nset -e\ncase \"$1\" in\n  configure)\n    frobnicate --all\n  ;;\n  abort-upgrade|abort-remove)\n    undo-things\n  ;;\n  *)\n    echo \"unknown $1\" >&2\n    exit 1\n  ;;\nesac\nexit 0\n";
    assert_eq!(postinst("p", text, &set), ["5: frobnicate --all"]);
}

#[test]
fn a_guard_follows_the_files_the_package_set_installs() {
    let text = "#!/bin/sh\nif [ -x /usr/bin/foo ]; then\n  foo --setup\nfi\n[ -x /usr/sbin/bar ] && bar --go\ntest -e /etc/baz || make-baz\nif command -v qux >/dev/null; then qux; else noqux; fi\n";
    let none = PackageSet::default();
    assert_eq!(
        postinst("p", text, &none),
        ["6: make-baz", "7: noqux"],
        "nothing installed: only the fallbacks run"
    );
    let all = PackageSet::of(&["usr/bin/foo*", "sbin/bar*", "etc/baz", "bin/qux*"], &[]);
    assert_eq!(
        postinst("p", text, &all),
        ["3: foo --setup", "5: bar --go", "7: qux"],
        "everything installed (merged /usr: /sbin/bar is /usr/sbin/bar)"
    );
}

#[test]
fn functions_are_called_with_their_arguments_and_variables_are_expanded() {
    let set = PackageSet::default();
    let text = "#!/bin/sh\nCONF=/etc/thing.conf\nsetup() {\n  touch-config \"$1\" \"$CONF\"\n}\nunused() {\n  never-run\n}\nif [ \"$1\" = configure ] && [ -z \"$2\" ]; then\n  setup first\nfi\n";
    assert_eq!(
        postinst("p", text, &set),
        ["4: touch-config first /etc/thing.conf"]
    );
}

#[test]
fn first_install_version_checks_and_exit_stop_where_dpkg_would() {
    let set = PackageSet::default();
    let text = "#!/bin/sh\nif dpkg --compare-versions \"$2\" lt 1.2; then\n  migrate-old\nfi\nif [ -n \"$2\" ]; then\n  upgrade-only\nfi\nexit 0\nafter-exit\n";
    assert_eq!(postinst("p", text, &set), ["3: migrate-old"]);
}

#[test]
fn unknown_conditions_walk_both_branches_and_an_exit_inside_does_not_stop_the_walk() {
    let set = PackageSet::default();
    let text = "#!/bin/sh\nif some-check; then\n  exit 0\nfi\nafter-maybe-exit\n";
    assert_eq!(
        postinst("p", text, &set),
        ["2: some-check", "5: after-maybe-exit"]
    );
}

#[test]
fn no_ops_and_reproduced_effects_are_not_reported() {
    let set = PackageSet::of(&[], &["_apt"]);
    let text = "#!/bin/sh\nset -e\n. /usr/share/debconf/confmodule\ndb_get foo/bar || true\ndpkg-maintscript-helper rm_conffile /etc/x 1.0 -- \"$@\"\ndeb-systemd-invoke start x.service\ninvoke-rc.d x start\ndeb-systemd-helper enable x.service\nadduser --system --no-create-home _apt\nadduser --system newuser\necho done\nupdate-ca-certificates --fresh\nrm -f /etc/not-there\nprintf 'x\\n' > /etc/written\n";
    assert_eq!(
        postinst("p", text, &set),
        [
            "10: adduser --system newuser",
            "12: update-ca-certificates --fresh",
            "14: printf x\\n > /etc/written"
        ]
    );
}

#[test]
fn update_alternatives_is_reproduced_only_for_the_installers_table() {
    let set = PackageSet::default();
    let text = "#!/bin/sh\nupdate-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 --slave /usr/bin/nawk nawk /usr/bin/mawk\nupdate-alternatives --install /usr/bin/vi vi /usr/bin/vim.tiny 15\n";
    assert_eq!(
        postinst("mawk", text, &set),
        ["3: update-alternatives --install /usr/bin/vi vi /usr/bin/vim.tiny 15"]
    );
}

#[test]
fn a_script_that_does_not_parse_is_reported_not_skipped() {
    let set = PackageSet::default();
    let found = postinst("p", "#!/bin/sh\nif true; then\n", &set);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("1: (the script does not parse as shell"),
        "{found:?}"
    );
}

#[test]
fn debhelper_blocks_are_named_in_the_finding() {
    let set = PackageSet::default();
    let facts = Recorder {
        set: &set,
        asked: RefCell::new(BTreeMap::new()),
    };
    let text = "#!/bin/sh\n# Automatically added by dh_python3\npy3compile -p foo\n# End automatically added section\n";
    let found = walk("foo", "postinst", text, &["postinst", "configure"], &facts);
    assert_eq!(found[0].debhelper.as_deref(), Some("dh_python3"));
    assert_eq!(
        found[0].to_string(),
        "foo postinst line 3: py3compile -p foo (from dh_python3)"
    );
}
