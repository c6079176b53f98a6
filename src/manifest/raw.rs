//! `images.toml` exactly as written: serde types with spans, before validation.
//!
//! Unknown keys are rejected here (`deny_unknown_fields`) so a typo never silently
//! builds a different image than the user meant.
//!
//! The same types derive the JSON schema (`schemas/images.schema.json`, `imgraph
//! schema`): their doc comments are what an editor shows on hover, so they say what
//! each key does and its default. Checks the schema cannot express (templates,
//! paths that must exist) stay in `load.rs`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

/// imgraph's manifest: the images to build, for which Debian-style dists and
/// architectures, from which root filesystems, and where to push them.
/// Check it with `imgraph check`; see what a step would do with `imgraph explain STEP`.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "imgraph images.toml")]
pub(crate) struct RawManifest {
    /// Settings for the whole manifest. Every key is optional.
    #[serde(default)]
    pub(crate) settings: RawSettings,
    /// Registries images can be pushed to, by a name of your choice
    /// (`[registries.local]`); an image lists the names in its `registries`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::registries")]
    pub(crate) registries: BTreeMap<S<String>, RawRegistry>,
    /// The images, by repository name (`[images.minideb]`): lowercase letters,
    /// digits and `.` `_` `-`, optionally with `/` path components.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::images")]
    pub(crate) images: BTreeMap<S<String>, S<RawImage>>,
}

/// Settings for the whole manifest. Every key is optional.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
pub(crate) struct RawSettings {
    /// The `created` time written into every image config, and the time every file
    /// mtime in the layers is clamped to. An RFC 3339 UTC time
    /// (`"2024-06-01T00:00:00Z"`), `"source-date-epoch"` (the `SOURCE_DATE_EPOCH`
    /// environment variable, which must be set) or `"git"` (the commit time of the
    /// newest commit touching that platform's rootfs inputs, so one arch's change
    /// does not re-stamp the others). Default: `SOURCE_DATE_EPOCH` if set, else
    /// 1970-01-01T00:00:00Z.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::created")]
    pub(crate) created: Option<S<String>>,
    /// How layers are compressed: `"gzip"` (every client can pull it) or `"zstd"`
    /// (smaller and faster; needs containerd 1.5+, podman 3.1+ or Docker 23+).
    /// Default: `"gzip"`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::compression", extend("default" = "gzip"))]
    pub(crate) compression: Option<S<String>>,
    /// The export folder, relative to this manifest: `build` writes one OCI layout
    /// per platform and one per dist's index under it. Default: `"out"`.
    #[schemars(with = "Option<String>", extend("default" = "out"))]
    pub(crate) out: Option<S<String>>,
    /// The cache folder (blobs and the action cache), relative to this manifest.
    /// `--cache DIR` and the `IMGRAPH_CACHE` environment variable take precedence.
    /// Default: `"cache"`.
    #[schemars(with = "Option<String>", extend("default" = "cache"))]
    pub(crate) cache: Option<S<String>>,
    /// A step cache shared by many machines, in any OCI registry:
    /// `"host[:port]/repository"`, or a table `{ url = "...", mode = "read", insecure = true }`.
    /// Every executed step's outputs are written there (as an OCI artifact found by a
    /// tag derived from the step key) and every build looks there before running a
    /// step. `mode = "read"` (for pull-request builds) never writes; `insecure` as for
    /// `[registries.*]`. Credentials come from the docker config, as for pushing.
    /// `--cache-registry REF` and `IMGRAPH_CACHE_REGISTRY` take precedence. Default: none.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::cache_registry")]
    pub(crate) cache_registry: Option<S<toml::Value>>,
    /// CI runner labels by arch, for `plan --json --matrix`: e.g.
    /// `{ arm64v8 = "ubuntu-24.04-arm", default = "ubuntu-24.04" }`. Keys are arch
    /// names or `default`. Default: none (matrix entries carry no `runner`).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::runners")]
    pub(crate) runners: Option<S<BTreeMap<S<String>, String>>>,
    /// The SBOM formats written for every platform image, attached to it in
    /// `out/` (and in the registry on push): `"spdx"` (SPDX 2.3 JSON) and
    /// `"cyclonedx"` (CycloneDX 1.6 JSON). `[]` writes none. An image's own
    /// `sbom` overrides this. Default: `["spdx"]`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::sbom_formats", extend("default" = ["spdx"]))]
    pub(crate) sbom: Option<S<Vec<S<String>>>>,
    /// Whether every platform image gets a provenance statement (in-toto
    /// Statement v1, SLSA Provenance v1) attached beside its SBOM. An image's
    /// own `provenance` overrides this. Default: `true`.
    #[schemars(extend("default" = true))]
    pub(crate) provenance: Option<bool>,
    /// Sign every pushed platform manifest and index with cosign-compatible
    /// signatures (stored at the `sha256-<hex>.sig` tag, where `cosign verify`
    /// looks): `sign = { key = "cosign.key" }`. Default: no signatures.
    #[serde(default)]
    #[schemars(with = "Option<RawSign>")]
    pub(crate) sign: Option<S<RawSign>>,
    /// What `imgraph library IMAGE` (the docker-library manifest file, for
    /// `Builder: oci-import`) cannot learn from git:
    /// `library = { maintainers = ["Jane Doe <jane@example.com> (@jane)"] }`.
    /// Default: none (the file is printed without `Maintainers:`, with a warning).
    #[serde(default)]
    #[schemars(with = "Option<RawLibrary>")]
    pub(crate) library: Option<S<RawLibrary>>,
}

/// `[settings] library`: the docker-library manifest file's fields git cannot say.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Library")]
pub(crate) struct RawLibrary {
    /// The image's maintainers, as docker-library writes them:
    /// `"Full Name <email-or-url> (@github-handle)"` or `"Full Name (@github-handle)"`.
    /// Default: none.
    #[serde(default)]
    #[schemars(
        with = "Vec<String>",
        extend("examples" = [["Jane Doe <jane@example.com> (@jane)"]])
    )]
    pub(crate) maintainers: Vec<S<String>>,
    /// The `GitRepo:` url docker-library clones, e.g.
    /// `"https://github.com/acme/hello.git"`. Default: the `origin` remote of the
    /// repository holding the layouts (an `git@host:path` remote as
    /// `https://host/path`).
    #[schemars(with = "Option<String>")]
    pub(crate) git_repo: Option<S<String>>,
    /// Where the built layouts are committed, relative to this manifest, when
    /// it is not the `out` folder itself (a checkout of the `GitRepo` the
    /// layouts are copied into): the folder that holds `<image>/<dist>/<arch>/`.
    /// `GitCommit:` and `Directory:` are read from the git repository holding it.
    /// Default: the `out` setting.
    #[schemars(with = "Option<String>")]
    pub(crate) out: Option<S<String>>,
}

/// `[settings] sign`: the signing key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Sign")]
pub(crate) struct RawSign {
    /// An ECDSA P-256 private key in PEM, relative to this manifest: PKCS#8
    /// (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`),
    /// SEC1 (`openssl ecparam -genkey`), password-protected PKCS#8 or
    /// cosign's (the password in `IMGRAPH_SIGNING_PASSWORD`). Or its public
    /// half (`PUBLIC KEY`, cosign.pub): verify-only, `verify --pushed` checks
    /// with it and `build --push` refuses (a public key cannot sign). Required.
    #[schemars(with = "String")]
    pub(crate) key: S<String>,
}

/// A registry to push to. Credentials come from `$DOCKER_CONFIG/config.json`
/// (default `~/.docker/config.json`): `auths` entries and credential helpers, as
/// `docker login` writes them. Never in the url: `user:password@` is refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Registry")]
pub(crate) struct RawRegistry {
    /// `[https://|http://]host[:port]/namespace`, e.g.
    /// `"registry.example.com/library"` or `"127.0.0.1:5000/test"`: an image
    /// named `minideb` is pushed to `<url>/minideb`. Without a scheme, HTTPS
    /// unless `insecure = true`; `http://` means plain HTTP (as `insecure = true`
    /// does) and `https://` means TLS, and `insecure` may not say otherwise.
    /// Ports are 1-65535. Required.
    #[schemars(with = "String", extend("examples" = ["127.0.0.1:5000/bitnami"]))]
    pub(crate) url: S<String>,
    /// Talk plain HTTP instead of HTTPS, for loopback test registries (the same
    /// as writing the url with `http://`). Default: `false`, or what the url's
    /// scheme says.
    #[serde(default)]
    #[schemars(with = "bool", extend("default" = false))]
    pub(crate) insecure: Option<bool>,
}

/// One image: built for every dist x arch pair, and indexed per dist into one
/// multi-platform image.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-taplo" = { "initKeys": ["dists", "arches", "rootfs"] }))]
#[schemars(rename = "Image")]
pub(crate) struct RawImage {
    /// The dists (releases) to build, e.g. `["bookworm", "trixie"]`. Each becomes
    /// one multi-platform index, tagged by `tags`. Names are used in tags and
    /// paths: letters, digits, `.`, `_` and `-`. Required, at least one.
    #[schemars(schema_with = "super::schema::dists")]
    pub(crate) dists: S<Vec<S<String>>>,
    /// The architectures to build every dist for, as bashbrew names (`amd64`,
    /// `arm64v8`, `arm32v7`, ...). Each maps to one OCI platform (`arm64v8` is
    /// `linux/arm64/v8`) and one Debian arch (`{debian_arch}`: `arm64`).
    /// Required, at least one.
    #[schemars(schema_with = "super::schema::arches")]
    pub(crate) arches: S<Vec<S<String>>>,
    /// Tag templates, resolved per dist: `{image}` and `{dist}` are available
    /// (not per-arch variables: a tag names the whole index). Default: `["{dist}"]`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::tags", extend("default" = ["{dist}"]))]
    pub(crate) tags: Option<S<Vec<S<String>>>>,
    /// One of `dists` that is also tagged `latest`. Default: none.
    #[schemars(with = "Option<String>")]
    pub(crate) latest: Option<S<String>>,
    /// Names of `[registries.NAME]` tables to push to with `build --push`. The first
    /// is canonical; the others are tagged from it. Default: `[]` (build locally only).
    #[serde(default)]
    #[schemars(with = "Vec<String>", extend("uniqueItems" = true, "default" = []))]
    pub(crate) registries: Vec<S<String>>,
    /// Where each platform's root filesystem comes from: exactly one of
    /// `{ dir = "..." }`, `{ tar = "..." }`, `{ command = "...", inputs = [...] }`
    /// or `{ debian = { ... } }` (Debian packages pinned in `images.lock`).
    /// Paths are relative to this manifest; all may use templates. Required.
    #[schemars(with = "RawRootfs")]
    #[serde(deserialize_with = "super::implicit::spanned_or_implicit")]
    pub(crate) rootfs: S<RawRootfs>,
    /// The image config: the `cmd`, `entrypoint`, `env`, ... that `docker run` uses.
    /// Default: empty.
    #[serde(default)]
    pub(crate) config: RawConfig,
    /// OCI annotations put on every platform manifest and on the index, e.g.
    /// `{ "org.opencontainers.image.source" = "https://..." }`. Default: none.
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
    /// Fail the layer step when the ELF binaries in a rootfs are mostly for another
    /// machine than the platform's (an arm64v8 rootfs full of x86-64 binaries).
    /// Default: `true`.
    #[schemars(extend("default" = true))]
    pub(crate) platform_check: Option<bool>,
    /// The SBOM formats for this image's platforms (`"spdx"`, `"cyclonedx"`;
    /// `[]` for none), overriding `[settings] sbom`. Default: the setting.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::sbom_formats")]
    pub(crate) sbom: Option<S<Vec<S<String>>>>,
    /// Whether this image's platforms get a provenance statement, overriding
    /// `[settings] provenance`. Default: the setting.
    pub(crate) provenance: Option<bool>,
}

/// Where a platform's root filesystem comes from. Exactly one of `dir`, `tar`,
/// `command` and `debian`. Templates: `{image} {dist} {arch} {debian_arch} {os} {architecture}
/// {variant} {platform}`, and `{out}` in a command; a variable with no value for a
/// platform (`{debian_arch}` on arm32v6) is an error at load time.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    { "required": ["dir"] },
    { "required": ["tar"] },
    { "required": ["command"] },
    { "required": ["debian"] },
]))]
#[schemars(rename = "Rootfs")]
pub(crate) struct RawRootfs {
    /// A folder holding the root filesystem, e.g. `"rootfs/{dist}/{arch}"`. Its
    /// content (names, modes, bytes, symlinks) is hashed into the key; files are
    /// owned by 0:0 in the layer unless `owners = "preserve"`.
    #[schemars(with = "Option<String>", extend("examples" = ["rootfs/{dist}/{arch}"]))]
    pub(crate) dir: Option<S<String>>,
    /// A tarball holding the root filesystem: `.tar`, `.tar.gz`, `.tar.xz` or
    /// `.tar.zst`, e.g. `"build/{dist}-{arch}.tar.xz"`. Its entries keep their owners.
    #[schemars(with = "Option<String>", extend("examples" = ["build/{dist}-{arch}.tar.xz"]))]
    pub(crate) tar: Option<S<String>>,
    /// A shell command that writes the root filesystem to `{out}` (a folder), or
    /// to `{out}.tar` (a tarball). It runs only when its key changes: the resolved
    /// command plus the content of `inputs`.
    #[schemars(
        with = "Option<String>",
        extend("examples" = ["mmdebstrap --variant=minbase --arch={debian_arch} {dist} {out}.tar"])
    )]
    pub(crate) command: Option<S<String>>,
    /// Debian packages: `imgraph lock` resolves `variant` plus `include` against
    /// the archive for each dist x arch and pins every package (version and
    /// sha256) in `images.lock` beside this manifest; `build` reads only the lock.
    /// `{ debian = {} }` is a minbase system from `http://deb.debian.org/debian`.
    /// Every key of it shapes the package set, so changing one re-resolves.
    #[serde(default)]
    #[schemars(
        with = "RawDebian",
        extend("examples" = [{ "variant": "minbase", "include": ["ca-certificates"] }])
    )]
    pub(crate) debian: Option<S<RawDebian>>,
    /// Files and folders a `command` reads, relative to this manifest: their content
    /// is hashed into the key, so editing them reruns the command. Only with
    /// `command`. Default: `[]`.
    #[serde(default)]
    #[schemars(with = "Vec<String>", extend("default" = []))]
    pub(crate) inputs: Vec<S<String>>,
    /// Owners of a `dir` source's files in the layer: `"root"` (0:0) or
    /// `"preserve"` (the uid/gid on disk). Only with `dir`. Default: `"root"`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::owners", extend("default" = "root"))]
    pub(crate) owners: Option<S<String>>,
    /// How long a `command` may run before it is stopped, e.g. `"30m"`, `"1h 30m"`.
    /// Only with `command`. Default: no limit.
    #[schemars(with = "Option<String>", extend("examples" = ["30m"]))]
    pub(crate) timeout: Option<S<String>>,
}

/// `rootfs = { debian = { ... } }`: which Debian packages make the root filesystem,
/// and the archive they come from. Every key is optional. `mirror`, `security`,
/// `suites` and `keyring` may use the per-platform templates (`{dist}`, `{arch}`,
/// `{debian_arch}`, ...); an arch Debian has no port for (arm32v6) is refused.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Debian")]
pub(crate) struct RawDebian {
    /// The base package set, as mmdebstrap and debootstrap mean it: `"essential"`
    /// (every `Essential: yes` package), `"apt"` (essential plus apt) or
    /// `"minbase"` (essential plus every `Priority: required` package).
    /// Dependencies are always added. Default: `"minbase"`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::debian_variant", extend("default" = "minbase"))]
    pub(crate) variant: Option<S<String>>,
    /// Extra packages to install (with their dependencies), e.g.
    /// `["ca-certificates"]`. Debian package names: lowercase letters, digits and
    /// `+ - .`. Order does not matter. Default: `[]`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::debian_packages", extend("default" = []))]
    pub(crate) include: Vec<S<String>>,
    /// Packages never installed, even when the variant or a dependency would
    /// pull them in (an alternative is chosen instead where there is one).
    /// Default: `[]`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::debian_packages", extend("default" = []))]
    pub(crate) exclude: Vec<S<String>>,
    /// The archive to read the suites from: an `http://` or `https://` url, no
    /// credentials. Default: `"http://deb.debian.org/debian"`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::archive_url", extend("default" = "http://deb.debian.org/debian"))]
    pub(crate) mirror: Option<S<String>>,
    /// The suites read from `mirror`; for a package in several, the highest
    /// version wins. E.g. `["{dist}", "{dist}-updates"]`. Default: `["{dist}"]`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::nonempty_strings", extend("default" = ["{dist}"]))]
    pub(crate) suites: Option<S<Vec<S<String>>>>,
    /// A security archive, e.g. `"http://deb.debian.org/debian-security"`: its
    /// `{dist}-security` suite is read too. Default: none.
    #[serde(default)]
    #[schemars(
        schema_with = "super::schema::archive_url",
        extend("examples" = ["http://deb.debian.org/debian-security"])
    )]
    pub(crate) security: Option<S<String>>,
    /// Archive components, e.g. `["main", "contrib"]`. Default: `["main"]`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::nonempty_strings", extend("default" = ["main"]))]
    pub(crate) components: Option<S<Vec<S<String>>>>,
    /// The OpenPGP keyring every suite's `InRelease` must be signed by: an
    /// absolute path or one relative to this manifest. Default:
    /// `"/usr/share/keyrings/debian-archive-keyring.gpg"` (Debian's
    /// `debian-archive-keyring` package).
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        extend("default" = "/usr/share/keyrings/debian-archive-keyring.gpg")
    )]
    pub(crate) keyring: Option<S<String>>,
    /// What to do about a maintainer-script command imgraph does not reproduce
    /// (the installer never runs the scripts; it reads them): `"report"` names
    /// each one in `build`'s output, `explain` and `--json`; `"strict"` fails the
    /// rootfs step naming package, script and line. Default: `"report"`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::debian_scripts", extend("default" = "report"))]
    pub(crate) scripts: Option<S<String>>,
}

// Field names are the manifest's, so a change can be reported as
// `images.hello.config.cmd`.
/// The image config `docker run` uses: command, environment, user, ports, volumes.
/// Every key is optional.
#[derive(Debug, Deserialize, Default, Clone, serde::Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Config")]
pub struct ConfigTable {
    /// The default command (OCI `Cmd`), e.g. `["/bin/bash"]`; arguments to
    /// `entrypoint` when that is set. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// The program every container runs (OCI `Entrypoint`); `cmd` and `docker run`
    /// arguments are appended. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Environment, as `"NAME=value"` entries, e.g. `["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]`.
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// The working directory of the container's process (OCI `WorkingDir`). Default: `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The user the process runs as: `"user"`, `"uid"`, `"user:group"` or `"uid:gid"`.
    /// Default: root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Image labels (OCI `Labels`), shown by `docker inspect`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Ports the container listens on, as `"80/tcp"`, `"53/udp"` or `"8080"` (tcp).
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<Vec<String>>,
    /// Paths a container runtime should mount a volume on, e.g. `["/data"]`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
    /// The signal `docker stop` sends, e.g. `"SIGQUIT"`. Default: `SIGTERM`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

pub(crate) type RawConfig = ConfigTable;
