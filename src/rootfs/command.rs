//! `rootfs = { command = ... }`: run a rootfs builder (mmdebstrap, debootstrap, a
//! script) into a fresh `{out}`, with `SOURCE_DATE_EPOCH` set, a timeout that kills
//! its whole process group, and its output in a log file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many log lines a failure shows.
const TAIL_LINES: usize = 40;

/// What to run.
pub struct CommandSpec<'a> {
    /// The command, `{out}` still in it; run by `sh -c`.
    pub command: &'a str,
    /// `{out}.tar` is written rather than a folder `{out}`.
    pub out_is_tar: bool,
    /// Killed after this long.
    pub timeout: Option<Duration>,
    /// `SOURCE_DATE_EPOCH`.
    pub created: u64,
    /// Working directory: the manifest's folder, so project scripts resolve.
    pub cwd: &'a Path,
    /// Where produced root filesystems are kept, by content hash.
    pub keep_dir: &'a Path,
    /// The step's log file.
    pub log: &'a Path,
    /// Also copy the output to stderr (`-v`).
    pub stream: bool,
}

/// What a successful run left.
#[derive(Debug)]
pub struct CommandRun {
    /// Content fingerprint of the produced rootfs.
    pub tree: String,
    /// Entries in it.
    pub files: u64,
    /// Where it is kept (a folder, or a `.tar`).
    pub kept: PathBuf,
}

/// A command rootfs that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Could not start or watch it.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited non-zero.
    #[error("`{command}` failed ({status}); last lines of {}:\n{tail}", log.display())]
    Failed {
        /// The command.
        command: String,
        /// Exit status.
        status: String,
        /// The log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// It ran out of time; its process group was killed.
    #[error("`{command}` timed out after {}; its process group was killed; last lines of {}:\n{tail}", humantime::format_duration(*timeout), log.display())]
    Timeout {
        /// The command.
        command: String,
        /// The limit.
        timeout: Duration,
        /// The log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// It succeeded but left nothing at `{out}`.
    #[error("`{command}` exited 0 but wrote nothing to {}", out.display())]
    NoOutput {
        /// The command.
        command: String,
        /// The expected output.
        out: PathBuf,
    },
    /// Fingerprinting the output.
    #[error(transparent)]
    Rootfs(#[from] super::FingerprintError),
    /// Moving the output into the cache.
    #[error("keeping the rootfs at {}: {source}", path.display())]
    Keep {
        /// Target.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs the command and keeps its output in the cache.
pub fn run(spec: &CommandSpec<'_>) -> Result<CommandRun, CommandError> {
    let spawn_err = |source| CommandError::Spawn {
        command: spec.command.to_string(),
        source,
    };
    std::fs::create_dir_all(spec.keep_dir).map_err(spawn_err)?;
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir).map_err(spawn_err)?;
    }
    let work = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(spec.keep_dir)
        .map_err(spawn_err)?;
    let out_base = work.path().join("rootfs");
    let out = if spec.out_is_tar {
        work.path().join("rootfs.tar")
    } else {
        std::fs::create_dir(&out_base).map_err(spawn_err)?;
        out_base.clone()
    };
    // The command as the user wrote it names failures; the shell gets `{out}` as a
    // reference to $IMGRAPH_OUT, so no path (a project folder with a space, a
    // `--cache` with a `;`) can split into words or run as shell code.
    let command = spec.command.to_string();
    let script = out_as_shell_variable(spec.command);

    let log = Arc::new(Mutex::new(File::create(spec.log).map_err(spawn_err)?));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(spec.cwd)
        .env(OUT_VARIABLE, &out_base)
        .env("SOURCE_DATE_EPOCH", spec.created.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(spawn_err)?;
    // Its own group misses the terminal's Ctrl-C: an interrupted imgraph kills it.
    let _group = crate::interrupt::ChildGroup::new(child.id());
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let log = Arc::clone(&log);
        let echo = spec.stream;
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                let _ = log.write_all(&line);
                let _ = log.write_all(b"\n");
                if echo {
                    crate::stderr::say!("  | {}", String::from_utf8_lossy(&line));
                }
            }
        })
    })
    .collect();

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_err)? {
            break Some(status);
        }
        if spec.timeout.is_some_and(|t| started.elapsed() >= t) {
            crate::interrupt::kill_group(child.id());
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    if status.is_none() {
        // The pipes may be held open by orphaned grandchildren: do not wait on them.
        drop(pumps);
    } else {
        for p in pumps {
            let _ = p.join();
        }
    }
    let tail = tail(spec.log);
    match status {
        None => {
            return Err(CommandError::Timeout {
                command,
                timeout: spec.timeout.unwrap_or_default(),
                log: spec.log.to_path_buf(),
                tail,
            })
        }
        Some(s) if !s.success() => {
            return Err(CommandError::Failed {
                command,
                status: s.to_string(),
                log: spec.log.to_path_buf(),
                tail,
            })
        }
        Some(_) => {}
    }
    let (tree, files) = if spec.out_is_tar {
        if !out.is_file() {
            return Err(CommandError::NoOutput { command, out });
        }
        (
            super::fingerprint_file(&out, &mut super::StatCache::default())?.0,
            1,
        )
    } else {
        let opts = super::FingerprintOptions {
            owners: super::Owners::Preserve,
            clamp_mtime: Some(spec.created),
        };
        let fp = super::fingerprint_dir(&out, &opts, &mut super::StatCache::default())?.0;
        if fp.entries.is_empty() {
            return Err(CommandError::NoOutput { command, out });
        }
        (fp.digest, fp.entries.len() as u64)
    };
    let kept = spec.keep_dir.join(if spec.out_is_tar {
        format!("{tree}.tar")
    } else {
        tree.clone()
    });
    let keep_err = |source| CommandError::Keep {
        path: kept.clone(),
        source,
    };
    // The same content may be kept already (another platform, an earlier run):
    // reused only when it still is that content.
    match super::kept::check(&kept, &tree, spec.created)? {
        super::kept::Kept::Intact => {}
        super::kept::Kept::Missing => std::fs::rename(&out, &kept).map_err(keep_err)?,
        super::kept::Kept::Changed { found } => {
            crate::notice::notice(&format!(
                "warning: the kept rootfs {} has changed in the cache (fingerprint {found}, recorded {tree}): replaced by this run's output",
                kept.display()
            ));
            // Moved into the work folder, which is deleted when `work` drops.
            std::fs::rename(&kept, work.path().join("changed")).map_err(keep_err)?;
            std::fs::rename(&out, &kept).map_err(keep_err)?;
        }
    }
    Ok(CommandRun { tree, files, kept })
}

/// The environment variable that holds the `{out}` path while the command runs.
pub const OUT_VARIABLE: &str = "IMGRAPH_OUT";

/// Rewrites every `{out}` in a `sh -c` script into a reference to
/// [`OUT_VARIABLE`] that expands to exactly one word in the quoting context where
/// it stands: `"${IMGRAPH_OUT}"` unquoted, `${IMGRAPH_OUT}` inside double quotes,
/// and `'"${IMGRAPH_OUT}"'` inside single quotes (close, expand, reopen). The
/// braces keep `{out}_x` from naming another variable.
pub fn out_as_shell_variable(command: &str) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let var = format!("${{{OUT_VARIABLE}}}");
    let mut out = String::with_capacity(command.len() + 16);
    let mut quote = Quote::None;
    let mut rest = command;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{out}") {
            match quote {
                Quote::None => out.push_str(&format!("\"{var}\"")),
                Quote::Double => out.push_str(&var),
                Quote::Single => out.push_str(&format!("'\"{var}\"'")),
            }
            rest = after;
            continue;
        }
        let len = c.len_utf8();
        match (quote, c) {
            // A backslash outside single quotes escapes the next character.
            (Quote::None | Quote::Double, '\\') => {
                let next = rest[len..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&rest[..len + next]);
                rest = &rest[len + next..];
                continue;
            }
            (Quote::None, '\'') => quote = Quote::Single,
            (Quote::Single, '\'') => quote = Quote::None,
            (Quote::None, '"') => quote = Quote::Double,
            (Quote::Double, '"') => quote = Quote::None,
            _ => {}
        }
        out.push(c);
        rest = &rest[len..];
    }
    out
}

fn tail(log: &Path) -> String {
    let text = std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // An empty tail would leave "last lines of LOG:" hanging over the next line.
    if lines.is_empty() {
        return "  (it printed nothing)".to_string();
    }
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::out_as_shell_variable as q;

    #[test]
    fn an_empty_log_says_it_printed_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("empty.log");
        std::fs::write(&log, b"").unwrap();
        assert_eq!(super::tail(&log), "  (it printed nothing)");
        std::fs::write(&log, b"one\ntwo\n").unwrap();
        assert_eq!(super::tail(&log), "  | one\n  | two");
    }

    #[test]
    fn out_becomes_one_word_in_every_quoting_context() {
        assert_eq!(
            q("tar -cf {out}.tar ."),
            r#"tar -cf "${IMGRAPH_OUT}".tar ."#
        );
        assert_eq!(q(r#"cp x "{out}/y""#), r#"cp x "${IMGRAPH_OUT}/y""#);
        assert_eq!(q("echo '{out}'"), r#"echo ''"${IMGRAPH_OUT}"''"#);
        assert_eq!(q(r"echo \{out}"), r"echo \{out}");
        assert_eq!(q("a {out}_x"), r#"a "${IMGRAPH_OUT}"_x"#);
        assert_eq!(q("no placeholder é"), "no placeholder é");
    }

    /// The rewritten script, run by a real shell with a hostile path, sees that
    /// path as one argument in each context and runs nothing from it.
    #[test]
    fn a_hostile_path_reaches_sh_as_one_word() {
        let path = "/tmp/My Proj/x; touch /tmp/imgraph-pwned-$$ `id` $(id) 'q\" *";
        for (script, want) in [
            ("printf '%s|' {out}", format!("{path}|")),
            (r#"printf '%s|' "{out}/a""#, format!("{path}/a|")),
            ("printf '%s|' 'pre {out} post'", format!("pre {path} post|")),
            ("printf '%s|' {out}.tar", format!("{path}.tar|")),
        ] {
            let got = std::process::Command::new("sh")
                .arg("-c")
                .arg(q(script))
                .env(super::OUT_VARIABLE, path)
                .output()
                .expect("sh runs");
            assert!(got.status.success(), "{script}");
            assert_eq!(String::from_utf8_lossy(&got.stdout), want, "{script}");
        }
    }
}
