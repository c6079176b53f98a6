//! `imgraph init`: a starter images.toml with comments on every key, and the JSON
//! schema beside it so an editor completes and checks it from the first keystroke.

use std::path::Path;

use crate::cli::Cli;
use crate::error::Error;
use crate::manifest::{self, Arch};

use super::Globals;

/// The schema file `init` writes beside the manifest; the starter's first line names it.
const SCHEMA_FILE: &str = "images.schema.json";

pub(super) fn run(cli: &Cli, globals: &Globals) -> Result<(), Error> {
    let path = &cli.file;
    if path.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; not overwriting it\n  = help: edit it (`imgraph check` validates it), or write a new one elsewhere with `imgraph -f OTHER/images.toml init`",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let schema = path.with_file_name(SCHEMA_FILE);
    std::fs::write(&schema, manifest::schema_text()).map_err(|source| Error::Io {
        path: schema.clone(),
        source,
    })?;
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let today = created.get(..10).unwrap_or("2024-06-01");
    std::fs::write(path, starter(today)).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    if !globals.quiet {
        let rootfs = dir.join("rootfs/stable/amd64");
        crate::stdout::println(&format!(
            "wrote {} and {} (the schema its first line names)\n\nnext:\n  put a root filesystem in {}/ (a static binary is enough)\n  imgraph check   # validate the manifest\n  imgraph build   # build out/base/stable/",
            path.display(),
            schema.display(),
            rootfs.display()
        ))?;
    }
    Ok(())
}

/// The starter manifest, dated `today` (YYYY-MM-DD).
fn starter(today: &str) -> String {
    let arches = Arch::names().collect::<Vec<_>>().join(" ");
    format!(
        r#"#:schema ./{SCHEMA_FILE}
# imgraph's manifest: which images to build, for which dists and arches, from
# which root filesystems. `imgraph check` validates it, `imgraph plan` shows what
# would run and why, `imgraph build` builds what changed into out/.
# Editors that read the line above (taplo, VS Code's Even Better TOML) complete
# and document every key; `imgraph schema` prints that schema.

[settings]
# The `created` time of every image, and the mtime every file is clamped to:
# an RFC 3339 UTC time, "source-date-epoch" ($SOURCE_DATE_EPOCH) or "git"
# (the commit time of the newest commit touching a platform's inputs).
created = "{today}T00:00:00Z"
# compression = "gzip"          # or "zstd"
# out = "out"                   # export folder, relative to this file
# cache = "cache"               # cache folder (--cache and IMGRAPH_CACHE win)

# Registries `imgraph build --push` pushes to, by a name of your choice.
# Credentials come from ~/.docker/config.json, as `docker login` writes them.
# [registries.local]
# url = "127.0.0.1:5000/myorg"  # host[:port]/namespace: images go to <url>/<image>
# insecure = true               # plain HTTP, for a registry on loopback

# One image; the table name is its repository name. It is built for every
# dist x arch, and each dist becomes one multi-arch index.
[images.base]
dists = ["stable"]              # names used in tags and paths
arches = ["amd64"]              # any of: {arches}
tags = ["{{dist}}"]               # tag templates, per dist: {{image}} {{dist}}
# latest = "stable"             # this dist is also tagged "latest"
# registries = ["local"]        # where --push sends it; the first is canonical

# Where each platform's root filesystem comes from: exactly one of dir, tar,
# command or debian. Templates: {{image}} {{dist}} {{arch}} {{debian_arch}} {{os}}
# {{architecture}} {{variant}} {{platform}}, and {{out}} in a command.
rootfs = {{ dir = "rootfs/{{dist}}/{{arch}}" }}
# rootfs = {{ tar = "build/{{dist}}-{{arch}}.tar.xz" }}
# rootfs = {{ command = "mmdebstrap --variant=minbase --arch={{debian_arch}} {{dist}} {{out}}.tar", inputs = [], timeout = "30m" }}
# Debian packages, pinned per dist x arch in images.lock by `imgraph lock` (use
# a Debian dist such as "bookworm"). variant: "minbase" (default), "essential"
# or "apt"; also exclude, mirror, suites, security, components and keyring.
# rootfs = {{ debian = {{ variant = "minbase", include = ["ca-certificates"], suites = ["{{dist}}", "{{dist}}-updates"], security = "http://deb.debian.org/debian-security" }} }}

# The image config `docker run` uses. Also: entrypoint, workdir, user, labels,
# exposed_ports, volumes, stop_signal.
config = {{ cmd = ["/bin/sh"], env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] }}
# annotations = {{ "org.opencontainers.image.source" = "https://example.com/base" }}
"#
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_starter_parses_and_only_lacks_its_rootfs_folder() {
        let dir = tempfile::tempdir().unwrap();
        let text = super::starter("2024-06-01");
        std::fs::create_dir_all(dir.path().join("rootfs/stable/amd64")).unwrap();
        let m = crate::manifest::parse(
            std::path::Path::new("images.toml"),
            &text,
            dir.path(),
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(m.platforms.len(), 1);
        assert!(text.starts_with("#:schema ./images.schema.json\n"));
    }

    /// Each commented `rootfs = ...` line is a valid rootfs once uncommented (all
    /// but the active `dir` need their sources, so only their shape is checked).
    #[test]
    fn the_commented_rootfs_examples_parse() {
        let text = super::starter("2024-06-01");
        let examples: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# rootfs = "))
            .collect();
        assert_eq!(examples.len(), 3, "{text}");
        assert!(examples.iter().any(|e| e.starts_with("{ debian = ")));
        for example in examples {
            let manifest = format!(
                "[images.a]\ndists = [\"bookworm\"]\narches = [\"amd64\"]\nrootfs = {example}\n"
            );
            let messages: Vec<String> = match crate::manifest::parse(
                std::path::Path::new("images.toml"),
                &manifest,
                std::path::Path::new("/nonexistent"),
                &Default::default(),
            ) {
                Ok(_) => Vec::new(),
                Err(crate::manifest::ManifestError::Invalid(d)) => {
                    d.items.into_iter().map(|i| i.message).collect()
                }
                Err(e) => panic!("{example}: {e}"),
            };
            // Only a missing tarball or keyring (there is no such folder) may fail it.
            assert!(
                messages.iter().all(|m| m.contains("does not exist")),
                "{example}: {messages:?}"
            );
        }
    }
}
