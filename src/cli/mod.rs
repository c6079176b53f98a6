//! Command-line arguments (clap derive). Parsing only: the work is in `commands`,
//! which reads these types; nothing here reads `commands`.

pub mod complete;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build reproducible multi-arch OCI base images from images.toml, doing only the work that changed.
#[derive(Debug, Parser)]
#[command(
    name = "imgraph",
    version,
    about,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = "Examples:\n  imgraph init                      # a starter images.toml\n  imgraph check                     # validate it, every problem at once\n  imgraph plan                      # what would run, and why\n  imgraph build                     # build what changed into out/\n  imgraph explain layer:hello:one/amd64\n\nMore: imgraph help COMMAND, imgraph man"
)]
pub struct Cli {
    /// The manifest.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "images.toml",
        value_name = "PATH"
    )]
    pub file: PathBuf,
    /// Cache folder (default: `cache` beside images.toml, or `settings.cache`).
    #[arg(long, global = true, env = "IMGRAPH_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// A shared step cache in an OCI registry, `[http://]host[:port]/repository`
    /// (overrides `cache_registry` in images.toml).
    // The environment's value is never shown in --help: it may hold what a user
    // mistook for a place for credentials.
    #[arg(
        long,
        global = true,
        env = "IMGRAPH_CACHE_REGISTRY",
        hide_env_values = true,
        value_name = "REF"
    )]
    pub cache_registry: Option<String>,
    /// What a build may do with the cache registry: `read` never writes (pull
    /// requests), `read-write` records every executed step.
    #[arg(
        long,
        global = true,
        env = "IMGRAPH_CACHE_MODE",
        value_enum,
        value_name = "MODE"
    )]
    pub cache_mode: Option<CacheModeArg>,
    /// Print nothing but errors (and --json output).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Say more: stream command output, print keys.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Colour: auto, always or never (NO_COLOR is honoured).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--cache-mode`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CacheModeArg {
    /// Look records up, never write.
    Read,
    /// Look up, and record every executed step.
    ReadWrite,
}

/// `--color`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colour on a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve every `debian` rootfs against its archive and pin its packages in images.lock.
    #[command(
        after_help = "Examples:\n  imgraph lock                      # resolve what the lock lacks\n  imgraph lock --update             # move every pin to the archive's current state\n  imgraph lock --update minideb:bookworm --json\n  imgraph lock --check              # no network: does the lock cover images.toml?"
    )]
    Lock(LockArgs),
    /// Show every step, fresh or dirty, and why. Runs nothing, writes nothing.
    #[command(
        after_help = "Examples:\n  imgraph plan\n  imgraph plan --json minideb:bookworm\n  imgraph plan --changed"
    )]
    Plan(PlanArgs),
    /// Run the dirty steps and write out/; with --push, push to the registries.
    #[command(
        after_help = "Examples:\n  imgraph build\n  imgraph build --changed --push\n  imgraph build --keep-going        # build every platform a failure does not reach\n  imgraph build -j 4 hello:one/arm64v8"
    )]
    Build(BuildArgs),
    /// Check that builds are reproducible, or that pushed images are what was built.
    #[command(
        after_help = "Examples:\n  imgraph verify --reproducible\n  imgraph verify --pushed minideb:bookworm"
    )]
    Verify(VerifyArgs),
    /// Print the step graph.
    #[command(
        after_help = "Examples:\n  imgraph graph | dot -Tsvg > graph.svg\n  imgraph graph --format json"
    )]
    Graph(GraphArgs),
    /// Write one image as an OCI layout or a `docker load` tarball.
    #[command(
        after_help = "Examples:\n  imgraph export hello:one --format oci -o /tmp/hello-oci\n  imgraph export hello:one/amd64 --format docker-archive -o hello.tar"
    )]
    Export(ExportArgs),
    /// Print the docker-library manifest file (library/IMAGE) for the committed per-arch layouts.
    #[command(
        after_help = "Each dist is one paragraph (Tags, Architectures, <arch>-GitCommit: the last commit\nthat changed out/IMAGE/DIST/ARCH, <arch>-Directory, Builder: oci-import, File: index.json).\nMaintainers come from `[settings] library`; GitRepo from the origin remote or that setting.\nExits 1, naming the folder, when a layout folder has uncommitted changes.\n\nExamples:\n  imgraph build && git add -f out/hello && git commit -m 'hello: rebuild'\n  imgraph library hello > library/hello-world"
    )]
    Library(LibraryArgs),
    /// check, init, explain, schema, completions, man.
    #[command(flatten)]
    Edit(EditCommand),
    /// Check or clean the cache folder.
    #[command(
        subcommand,
        after_help = "Examples:\n  imgraph cache verify\n  imgraph cache gc"
    )]
    Cache(CacheCommand),
}

impl Command {
    /// The words that name it on the command line (`cache verify`), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Lock(_) => "lock",
            Command::Plan(_) => "plan",
            Command::Build(_) => "build",
            Command::Verify(_) => "verify",
            Command::Graph(_) => "graph",
            Command::Export(_) => "export",
            Command::Edit(EditCommand::Check(_)) => "check",
            Command::Edit(EditCommand::Init) => "init",
            Command::Edit(EditCommand::Explain(_)) => "explain",
            Command::Edit(EditCommand::Schema) => "schema",
            Command::Edit(EditCommand::Completions(_)) => "completions",
            Command::Edit(EditCommand::Man(_)) => "man",
            Command::Cache(CacheCommand::Verify) => "cache verify",
            Command::Cache(CacheCommand::Gc) => "cache gc",
            Command::Library(_) => "library",
        }
    }
}

/// `library`.
#[derive(Debug, Args)]
pub struct LibraryArgs {
    /// IMAGE[:DIST]: the image (only that dist when given).
    #[arg(value_name = "IMAGE", add = clap_complete::ArgValueCompleter::new(complete::complete_selector))]
    pub image: String,
}

/// `imgraph cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Check every blob against its digest and every entry against its blobs; drop what is corrupt.
    Verify,
    /// Delete what the current manifest's steps and the last successful build do not need.
    Gc,
}

/// `images.toml` editing and tooling commands (kept apart from the build commands).
#[derive(Debug, Subcommand)]
pub enum EditCommand {
    /// Validate images.toml without building: every problem at once, each with file:line:col and a hint.
    #[command(
        after_help = "Exits 0 and prints a one-line summary when the manifest is valid, 2 when it is not.\n\nExamples:\n  imgraph check\n  imgraph check -f examples/minideb/images.toml"
    )]
    Check(CheckArgs),
    /// Write a starter images.toml (with comments, and the schema editors read) and refuse to overwrite one.
    #[command(
        after_help = "Examples:\n  imgraph init\n  imgraph -f base/images.toml init\n  mkdir -p rootfs/stable/amd64 && imgraph build"
    )]
    Init,
    /// Show a step's inputs (each with its hash), its key, its cached outputs, and why it is dirty.
    #[command(
        after_help = "Step ids are the ones `imgraph plan` prints: KIND:IMAGE:DIST[/ARCH][@REGISTRY].\n\nExamples:\n  imgraph explain rootfs:hello:one/amd64\n  imgraph explain index:minideb:bookworm --json"
    )]
    Explain(ExplainArgs),
    /// Print the JSON schema of images.toml (what schemas/images.schema.json holds).
    #[command(
        after_help = "Editors (taplo, Even Better TOML) use it when images.toml starts with\n  #:schema ./schemas/images.schema.json\n\nExamples:\n  imgraph schema > schemas/images.schema.json"
    )]
    Schema,
    /// Print a shell completion script; it completes commands, flags, selectors and step ids.
    #[command(
        after_help = "Selectors and step ids are read from the manifest (-f, default ./images.toml) when you press TAB.\n\nExamples:\n  echo 'source <(imgraph completions bash)' >> ~/.bashrc\n  echo 'source <(imgraph completions zsh)' >> ~/.zshrc\n  imgraph completions fish > ~/.config/fish/completions/imgraph.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the man page (roff) of imgraph or of one of its commands.
    #[command(
        after_help = "Examples:\n  imgraph man | man -l -\n  imgraph man build > imgraph-build.1"
    )]
    Man(ManArgs),
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Accept uncommitted inputs with created = "git".
    #[arg(long)]
    pub allow_dirty: bool,
}

/// `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The step id, e.g. layer:minideb:bookworm/arm64v8.
    #[arg(value_name = "STEP", add = clap_complete::ArgValueCompleter::new(complete::complete_step))]
    pub step: String,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Accept uncommitted inputs with created = "git".
    #[arg(long)]
    pub allow_dirty: bool,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `completions SHELL`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Shell {
    /// Bash 4+.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command, for its own page (default: imgraph's).
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

/// Selection shared by most commands.
#[derive(Debug, Args, Clone, Default)]
pub struct Selection {
    /// IMAGE[:DIST[/ARCH]], e.g. minideb, minideb:bookworm, minideb:bookworm/arm64v8 (default: everything).
    #[arg(value_name = "SELECTOR", add = clap_complete::ArgValueCompleter::new(complete::complete_selector))]
    pub selectors: Vec<String>,
}

/// `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// List only dirty steps.
    #[arg(long)]
    pub changed: bool,
    /// With --json: a CI matrix of the dirty work instead of the steps,
    /// `{"include":[{"selector","arch","runner"}]}` (GitHub Actions' `strategy.matrix`).
    #[arg(long, requires = "json")]
    pub matrix: bool,
    /// Accept uncommitted inputs with created = "git".
    #[arg(long)]
    pub allow_dirty: bool,
    #[command(flatten)]
    pub selection: Selection,
}

/// `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Export, tag and push only images whose digest differs from the last successful build (or push).
    #[arg(long)]
    pub changed: bool,
    /// Push to the registries after building.
    #[arg(long)]
    pub push: bool,
    /// Fail any platform step that neither the local cache nor the cache registry
    /// has, naming it, instead of building it (an assembler job that must not build).
    #[arg(long)]
    pub require_cache: bool,
    /// Steps run at once (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Keep building after a step fails: every step that does not depend on a
    /// failure runs, is cached and exported; a dist's index is written and pushed
    /// only if every platform of it built. Still exits 1 naming each failure.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Accept uncommitted inputs with created = "git".
    #[arg(long)]
    pub allow_dirty: bool,
    #[command(flatten)]
    pub selection: Selection,
}

/// `lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Re-resolve the selected platforms against the archive's current state and
    /// print what changed (without it, pins already in the lock stay).
    #[arg(long, conflicts_with = "check")]
    pub update: bool,
    /// Touch no network: exit 0 when the lock covers every debian platform as the
    /// manifest now describes it, 1 naming what is missing or stale.
    #[arg(long)]
    pub check: bool,
    /// Print `{"changed":[{"image","dist","arch","package","old","new"}]}` on stdout.
    #[arg(long)]
    pub json: bool,
    /// Accept a Release whose Valid-Until has passed.
    #[arg(long)]
    pub allow_expired: bool,
    /// Accept an archive whose Release Date is older than the one locked (a replay).
    #[arg(long)]
    pub allow_downgrade: bool,
    #[command(flatten)]
    pub selection: Selection,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Rebuild in a scratch cache and compare every digest.
    #[arg(long)]
    pub reproducible: bool,
    /// Fetch each pushed index by digest and check its platforms and binaries.
    #[arg(long)]
    pub pushed: bool,
    /// With --pushed: check every platform manifest and index is signed by this
    /// key (a `PUBLIC KEY` PEM such as cosign.pub; default: `[settings] sign`'s key).
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub key: Option<PathBuf>,
    /// Accept uncommitted inputs with created = "git".
    #[arg(long)]
    pub allow_dirty: bool,
    #[command(flatten)]
    pub selection: Selection,
}

/// `graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    #[command(flatten)]
    pub selection: Selection,
}

/// `graph --format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// `{"steps":[...]}`.
    Json,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// IMAGE:DIST (an index, for oci) or IMAGE:DIST/ARCH (one platform).
    #[arg(value_name = "SELECTOR", add = clap_complete::ArgValueCompleter::new(complete::complete_selector))]
    pub selector: String,
    /// Output format (default: docker-archive for `-o -` or a name ending in .tar, else oci).
    #[arg(long, value_enum)]
    pub format: Option<ExportFormat>,
    /// Where to write: a folder for oci (a new one, an empty one, or an OCI layout to add
    /// to), a file for docker-archive (`-` for standard output).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: PathBuf,
}

/// `export --format`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    /// An OCI image layout folder.
    Oci,
    /// The tarball `docker load` and `podman load` take.
    DockerArchive,
}
