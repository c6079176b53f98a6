//! Walks a maintainer script's syntax tree as dpkg runs it on a first install
//! (`preinst install`, `postinst configure` with no old version): `$1` and `$2`
//! are known, `if`/`case`/`&&`/`||` follow what is known (`[ -x PATH ]`,
//! `test -e`, `command -v` against the files the package set installs), functions
//! are called with their arguments, and every other simple command reached is
//! handed to [`Sink::command`] with its words expanded as far as they are known.
//!
//! What cannot be known (a command's exit status, a variable set from `$(...)`)
//! makes both ways possible: both branches are walked, and an `exit` inside a
//! branch that may not run does not stop the walk. So a command is missed only
//! when the script provably never reaches it on a first install.

use std::collections::BTreeMap;

use brush_parser::ast::{
    AndOr, AndOrList, CaseClauseCommand, Command, CommandPrefixOrSuffixItem, CompoundCommand,
    CompoundList, FunctionDefinition, IoFileRedirectKind, IoFileRedirectTarget, IoRedirect,
    Pipeline, SimpleCommand, TestExpr, UnaryPredicate, Word,
};
use brush_parser::word::{
    Parameter, ParameterExpr, SpecialParameter, WordPiece, WordPieceWithSource,
};

/// What the evaluator asks about the installed tree.
pub(super) trait World {
    /// Whether `path` (absolute) exists after unpacking, and is what `test` asks.
    fn test_file(&self, test: FileTest, path: &str) -> bool;
    /// The text of the file at `path` (absolute) the package set ships, for `.`.
    fn read(&self, path: &str) -> Option<String>;
    /// The names in folder `dir` (absolute) the package set ships, sorted.
    fn list(&self, dir: &str) -> Vec<String>;
}

/// The file tests the evaluator answers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub(super) enum FileTest {
    /// `-e`, `-a`, `-r`, `-w`, `-s` (sizes are not known: existence).
    Exists,
    /// `-f`.
    File,
    /// `-d`.
    Dir,
    /// `-L`, `-h`.
    Symlink,
    /// `-x`.
    Executable,
}

/// One simple command reached: its words (None where not known), the line its
/// name is on, and the file its standard output goes to (`> /etc/x`), if any.
#[derive(Debug, Clone)]
pub(super) struct Reached {
    pub(super) line: usize,
    pub(super) words: Vec<Option<String>>,
    pub(super) writes: Option<String>,
}

impl Reached {
    /// The command as a line of text, unknown words as `?`.
    pub(super) fn text(&self) -> String {
        let mut s = self
            .words
            .iter()
            .map(|w| w.as_deref().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(w) = &self.writes {
            s.push_str(&format!(" > {w}"));
        }
        s
    }
}

/// Receives every simple command the script reaches that is not a shell
/// builtin or one of its functions.
pub(super) trait Sink {
    /// A command reached.
    fn command(&mut self, reached: Reached);
}

/// A command's exit status as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    fn of(b: bool) -> Status {
        if b {
            Status::True
        } else {
            Status::False
        }
    }
    fn not(self) -> Status {
        match self {
            Status::True => Status::False,
            Status::False => Status::True,
            Status::Unknown => Status::Unknown,
        }
    }
}

/// How a piece of script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Next(Status),
    Exit,
    Return(Status),
    /// `continue` (true) or `break` (false) out of the innermost loop.
    Loop(bool),
}

/// Functions calling functions deeper than this are not followed (a recursive
/// script would otherwise never end).
const MAX_DEPTH: usize = 16;

/// The walk's state: variables, positional parameters, functions.
pub(super) struct Eval<'a> {
    world: &'a dyn World,
    sink: &'a mut dyn Sink,
    vars: BTreeMap<String, Option<String>>,
    args: Vec<String>,
    functions: BTreeMap<String, FunctionDefinition>,
    depth: usize,
    /// The working folder, while `cd` says (dpkg starts scripts in `/`).
    cwd: Option<String>,
    /// Inside a sourced file: the line of the `.` in the script.
    at_line: Option<usize>,
}

/// Walks `program` as dpkg runs the script with `args` (`["configure"]` for a
/// postinst, `["install"]` for a preinst).
pub(super) fn run(
    program: &brush_parser::ast::Program,
    args: &[&str],
    world: &dyn World,
    sink: &mut dyn Sink,
) {
    let mut e = Eval {
        world,
        sink,
        vars: BTreeMap::new(),
        args: args.iter().map(|s| s.to_string()).collect(),
        functions: BTreeMap::new(),
        depth: 0,
        cwd: Some("/".to_string()),
        at_line: None,
    };
    // dpkg's environment for a maintainer script.
    for (k, v) in [
        ("DPKG_MAINTSCRIPT_NAME", ""),
        ("DPKG_ROOT", ""),
        ("DPKG_RUNNING_VERSION", ""),
        ("DPKG_MAINTSCRIPT_ARCH", ""),
    ] {
        e.vars.insert(k.to_string(), Some(v.to_string()));
    }
    for cc in &program.complete_commands {
        if e.list(cc) == Flow::Exit {
            return;
        }
    }
}

impl Eval<'_> {
    fn list(&mut self, list: &CompoundList) -> Flow {
        let mut last = Flow::Next(Status::True);
        for item in &list.0 {
            last = self.and_or(&item.0);
            if !matches!(last, Flow::Next(_)) {
                return last;
            }
        }
        last
    }

    /// Walks `list` in a branch that may or may not run: its `exit` or `return`
    /// does not end the walk.
    fn maybe_list(&mut self, list: &CompoundList) -> Status {
        match self.list(list) {
            Flow::Next(_) | Flow::Exit | Flow::Return(_) | Flow::Loop(_) => Status::Unknown,
        }
    }

    fn and_or(&mut self, list: &AndOrList) -> Flow {
        let mut status = match self.pipeline(&list.first) {
            Flow::Next(s) => s,
            other => return other,
        };
        for next in &list.additional {
            let (run_if, p) = match next {
                AndOr::And(p) => (Status::True, p),
                AndOr::Or(p) => (Status::False, p),
            };
            if status == run_if {
                status = match self.pipeline(p) {
                    Flow::Next(s) => s,
                    other => return other,
                };
            } else if status == Status::Unknown {
                // May run: `a && b` is false when b is, else unknown (a may
                // have been false); `a || b` true when b is, else unknown.
                status = match self.pipeline(p) {
                    Flow::Next(s) if s == run_if.not() => s,
                    _ => Status::Unknown,
                };
            }
        }
        Flow::Next(status)
    }

    fn pipeline(&mut self, p: &Pipeline) -> Flow {
        let mut last = Flow::Next(Status::True);
        let piped = p.seq.len() > 1;
        for c in &p.seq {
            last = self.command(c);
            // Each part of a pipeline runs in a subshell: its exit ends only it.
            if piped && !matches!(last, Flow::Next(_)) {
                last = Flow::Next(Status::Unknown);
            }
        }
        match last {
            Flow::Next(s) if p.bang => Flow::Next(s.not()),
            other => other,
        }
    }

    fn command(&mut self, c: &Command) -> Flow {
        match c {
            Command::Simple(s) => self.simple(s),
            Command::Compound(cc, _) => self.compound(cc),
            Command::Function(f) => {
                self.functions.insert(f.fname.value.clone(), f.clone());
                Flow::Next(Status::True)
            }
            Command::ExtendedTest(..) => Flow::Next(Status::Unknown),
        }
    }

    fn compound(&mut self, cc: &CompoundCommand) -> Flow {
        match cc {
            CompoundCommand::BraceGroup(b) => self.list(&b.list),
            CompoundCommand::Subshell(s) => {
                let cwd = self.cwd.clone();
                let flow = match self.list(&s.list) {
                    Flow::Next(s) | Flow::Return(s) => Flow::Next(s),
                    Flow::Exit | Flow::Loop(_) => Flow::Next(Status::Unknown),
                };
                self.cwd = cwd;
                flow
            }
            CompoundCommand::IfClause(i) => {
                let mut cond = match self.list(&i.condition) {
                    Flow::Next(s) => s,
                    other => return other,
                };
                let mut branches: Vec<(Status, &CompoundList)> = vec![(cond, &i.then)];
                for e in i.elses.iter().flatten() {
                    if cond == Status::True {
                        break;
                    }
                    let s = match &e.condition {
                        Some(c) => match self.list(c) {
                            Flow::Next(s) => s,
                            other => return other,
                        },
                        None => Status::True,
                    };
                    // An elif reached only when earlier conditions may be false.
                    cond = if cond == Status::Unknown && s == Status::True {
                        Status::Unknown
                    } else {
                        s
                    };
                    branches.push((cond, &e.body));
                }
                self.branches(branches)
            }
            CompoundCommand::CaseClause(c) => self.case(c),
            CompoundCommand::ForClause(f) => {
                let values: Option<Vec<String>> = match &f.values {
                    Some(ws) => ws
                        .iter()
                        .map(|w| self.expand(w).and_then(|v| self.glob_words(&w.value, v)))
                        .collect::<Option<Vec<Vec<String>>>>()
                        .map(|v| v.concat()),
                    None => Some(self.args[1..].to_vec()),
                };
                match values {
                    Some(vs) => {
                        let mut last = Flow::Next(Status::True);
                        for v in vs {
                            self.vars.insert(f.variable_name.clone(), Some(v));
                            last = match self.list(&f.body.list) {
                                Flow::Loop(true) => Flow::Next(Status::True),
                                Flow::Loop(false) => return Flow::Next(Status::True),
                                Flow::Next(s) => Flow::Next(s),
                                other => return other,
                            };
                        }
                        last
                    }
                    None => {
                        self.vars.insert(f.variable_name.clone(), None);
                        Flow::Next(self.maybe_list(&f.body.list))
                    }
                }
            }
            CompoundCommand::WhileClause(w) | CompoundCommand::UntilClause(w) => {
                // Walked once: what its loop does, whatever the count.
                self.maybe_list(&w.0);
                Flow::Next(self.maybe_list(&w.1.list))
            }
            CompoundCommand::Arithmetic(_)
            | CompoundCommand::ArithmeticForClause(_)
            | CompoundCommand::Coprocess(_) => Flow::Next(Status::Unknown),
        }
    }

    /// Runs the first branch whose condition is true; each branch whose
    /// condition is unknown is walked as one that may run.
    fn branches(&mut self, branches: Vec<(Status, &CompoundList)>) -> Flow {
        let mut any_unknown = false;
        for (cond, body) in branches {
            match cond {
                Status::True if !any_unknown => return self.list(body),
                Status::True | Status::Unknown => {
                    any_unknown = true;
                    self.maybe_list(body);
                    if cond == Status::True {
                        break;
                    }
                }
                Status::False => {}
            }
        }
        Flow::Next(if any_unknown {
            Status::Unknown
        } else {
            Status::True
        })
    }

    fn case(&mut self, c: &CaseClauseCommand) -> Flow {
        let value = self.expand(&c.value);
        let mut branches: Vec<(Status, &CompoundList)> = Vec::new();
        let empty = CompoundList(Vec::new());
        for item in &c.cases {
            let matched = match &value {
                None => Status::Unknown,
                Some(v) => {
                    let mut m = Status::False;
                    for p in &item.patterns {
                        match self.expand(p) {
                            Some(p) if glob(&p, v) => {
                                m = Status::True;
                                break;
                            }
                            Some(_) => {}
                            None => m = Status::Unknown,
                        }
                    }
                    m
                }
            };
            branches.push((matched, item.cmd.as_ref().unwrap_or(&empty)));
        }
        // `;;` only: fall-through (`;&`) is bash's, not dash's.
        match self.branches(branches) {
            Flow::Next(_) if value.is_none() => Flow::Next(Status::Unknown),
            other => other,
        }
    }

    fn simple(&mut self, s: &SimpleCommand) -> Flow {
        let mut st = Parts::default();
        for item in s.prefix.iter().flat_map(|p| &p.0) {
            self.item(item, true, &mut st);
        }
        if let Some(w) = &s.word_or_name {
            st.line = line_of(w).max(st.line);
            st.words.push(self.expand(w));
        }
        for item in s.suffix.iter().flat_map(|p| &p.0) {
            self.item(item, false, &mut st);
        }
        let Parts {
            words,
            line,
            assignments,
            writes,
        } = st;
        if words.is_empty() {
            for (n, v) in assignments {
                self.vars.insert(n, v);
            }
            return Flow::Next(Status::True);
        }
        let reached = Reached {
            line: self.at_line.unwrap_or(line),
            words,
            writes,
        };
        self.dispatch(reached)
    }

    /// One prefix or suffix item of a simple command, into `st`.
    fn item(&mut self, item: &CommandPrefixOrSuffixItem, in_prefix: bool, st: &mut Parts) {
        match item {
            CommandPrefixOrSuffixItem::Word(w) => {
                if st.line == 0 {
                    st.line = line_of(w);
                }
                if matches!(w.value.as_str(), "\"$@\"" | "$@" | "$*") {
                    // One word per argument, none without arguments.
                    st.words.extend(self.args[1..].iter().cloned().map(Some));
                } else {
                    st.words.push(self.expand(w));
                }
            }
            CommandPrefixOrSuffixItem::AssignmentWord(a, w) if in_prefix => {
                if st.line == 0 {
                    st.line = line_of(w);
                }
                let value = match &a.value {
                    brush_parser::ast::AssignmentValue::Scalar(v) => self.expand(v),
                    brush_parser::ast::AssignmentValue::Array(_) => None,
                };
                if let brush_parser::ast::AssignmentName::VariableName(n) = &a.name {
                    st.assignments.push((n.clone(), value));
                }
            }
            CommandPrefixOrSuffixItem::AssignmentWord(_, w) => st.words.push(self.expand(w)),
            CommandPrefixOrSuffixItem::IoRedirect(r) => {
                if let IoRedirect::File(
                    fd,
                    IoFileRedirectKind::Write
                    | IoFileRedirectKind::Append
                    | IoFileRedirectKind::Clobber,
                    IoFileRedirectTarget::Filename(f),
                ) = r
                {
                    let to = self.expand(f);
                    let fd = fd.as_ref().map_or(1, |fd| *fd as i64);
                    if fd == 1 && to.as_deref() != Some("/dev/null") {
                        st.writes = Some(to.unwrap_or_else(|| "?".into()));
                    }
                }
            }
            CommandPrefixOrSuffixItem::ProcessSubstitution(..) => st.words.push(None),
        }
    }

    fn dispatch(&mut self, reached: Reached) -> Flow {
        let words = &reached.words;
        let Some(name) = words[0].clone() else {
            self.sink.command(reached);
            return Flow::Next(Status::Unknown);
        };
        let arg = |i: usize| words.get(i).cloned().flatten();
        let known_args: Option<Vec<String>> = words[1..].iter().cloned().collect();
        if let Some(f) = self.functions.get(&name).cloned() {
            if self.depth >= MAX_DEPTH {
                return Flow::Next(Status::Unknown);
            }
            let saved = std::mem::replace(
                &mut self.args,
                std::iter::once(name.clone())
                    .chain(words[1..].iter().map(|w| w.clone().unwrap_or_default()))
                    .collect(),
            );
            self.depth += 1;
            let flow = self.compound(&f.body.0);
            self.depth -= 1;
            self.args = saved;
            return match flow {
                Flow::Return(s) | Flow::Next(s) => Flow::Next(s),
                Flow::Exit => Flow::Exit,
                Flow::Loop(_) => Flow::Next(Status::Unknown),
            };
        }
        if reached.writes.is_some() && !matches!(name.as_str(), "exit" | "return") {
            // Writing a file (`: > /etc/x`, `echo ... > /etc/x`) is an effect.
            self.sink.command(reached);
            return Flow::Next(Status::Unknown);
        }
        let status = match name.as_str() {
            "exit" => return Flow::Exit,
            "return" => {
                return Flow::Return(match arg(1).as_deref() {
                    None | Some("0") => Status::True,
                    Some(_) => Status::False,
                })
            }
            "true" | ":" => Status::True,
            "cd" => {
                self.cwd = arg(1).and_then(|d| self.absolute(&d));
                Status::True
            }
            "." | "source" if arg(1).as_deref() != Some("/usr/share/debconf/confmodule") => {
                match arg(1).and_then(|p| self.source(&p, reached.line)) {
                    Some(Flow::Next(s)) => s,
                    Some(other) => return other,
                    None => {
                        self.sink.command(reached);
                        Status::Unknown
                    }
                }
            }
            "false" => Status::False,
            "continue" => return Flow::Loop(true),
            "break" => return Flow::Loop(false),
            "set" | "shift" | "export" | "local" | "readonly" | "unset" | "umask" | "trap"
            | "wait" => {
                if name == "shift" && self.args.len() > 1 {
                    self.args.remove(1);
                }
                if matches!(name.as_str(), "export" | "local" | "readonly") {
                    for w in words[1..].iter().flatten() {
                        if let Some((k, v)) = w.split_once('=') {
                            self.vars.insert(k.to_string(), Some(v.to_string()));
                        }
                    }
                }
                Status::True
            }
            "echo" | "printf" => Status::True,
            "read" => {
                for w in words[1..].iter().flatten() {
                    if !w.starts_with('-') {
                        self.vars.insert(w.clone(), None);
                    }
                }
                Status::Unknown
            }
            "[" | "test" => match known_args {
                Some(mut a) => {
                    if name == "[" && a.last().map(String::as_str) == Some("]") {
                        a.pop();
                    }
                    self.test(&a)
                }
                None => Status::Unknown,
            },
            "command" if arg(1).as_deref() == Some("-v") || arg(1).as_deref() == Some("-V") => {
                match arg(2) {
                    Some(c) => Status::of(self.has_command(&c)),
                    None => Status::Unknown,
                }
            }
            "which" | "type" | "hash" => match arg(1) {
                Some(c) if !c.starts_with('-') => Status::of(self.has_command(&c)),
                _ => Status::Unknown,
            },
            "command" | "exec" if words.len() > 1 && arg(1).is_some() => {
                let rest = Reached {
                    line: reached.line,
                    words: words[1..].to_vec(),
                    writes: reached.writes.clone(),
                };
                let flow = self.dispatch(rest);
                return if name == "exec" { Flow::Exit } else { flow };
            }
            "dpkg" if arg(1).as_deref() == Some("--compare-versions") => {
                match (arg(2), arg(3), arg(4)) {
                    (Some(a), Some(op), Some(b)) => compare_versions(&a, &op, &b),
                    _ => Status::Unknown,
                }
            }
            _ => {
                if name.starts_with("db_") {
                    // debconf answers in $RET: not known here.
                    self.vars.insert("RET".to_string(), None);
                }
                self.sink.command(reached);
                Status::Unknown
            }
        };
        Flow::Next(status)
    }

    /// A `for` word's values: itself, or for an unquoted pattern in one folder
    /// (`*`, `/etc/foo.d/*.conf`), the paths the package set ships that match
    /// (the pattern itself when none does, as the shell leaves it).
    fn glob_words(&self, raw: &str, value: String) -> Option<Vec<String>> {
        if raw.contains(['"', '\'']) || !value.contains(['*', '?', '[']) {
            return Some(vec![value]);
        }
        let (dir, pattern, prefix) = match value.rsplit_once('/') {
            Some((d, p)) if !d.contains(['*', '?', '[']) => {
                let dir = if d.is_empty() {
                    "/".to_string()
                } else {
                    d.to_string()
                };
                (self.absolute(&dir)?, p.to_string(), format!("{d}/"))
            }
            Some(_) => return None,
            None => (self.cwd.clone()?, value.clone(), String::new()),
        };
        let found: Vec<String> = self
            .world
            .list(&dir)
            .into_iter()
            .filter(|n| !n.starts_with('.') && glob(&pattern, n))
            .map(|n| format!("{prefix}{n}"))
            .collect();
        Some(if found.is_empty() { vec![value] } else { found })
    }

    /// `path` made absolute against the working folder.
    fn absolute(&self, path: &str) -> Option<String> {
        if path.starts_with('/') {
            Some(path.to_string())
        } else {
            let cwd = self.cwd.as_deref()?;
            Some(format!("{}/{path}", cwd.trim_end_matches('/')))
        }
    }

    /// `. FILE`: the file the package set ships is read and walked here (its
    /// functions defined); false when it is not known.
    fn source(&mut self, path: &str, line: usize) -> Option<Flow> {
        let text = self.world.read(&self.absolute(path)?)?;
        let program = super::parse::parse(&text).ok()?;
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let mut flow = Flow::Next(Status::True);
        for cc in &program.complete_commands {
            flow = self.list_at(cc, line);
            if !matches!(flow, Flow::Next(_)) {
                break;
            }
        }
        self.depth -= 1;
        Some(flow)
    }

    /// Walks a sourced file's list; commands it reaches are reported at the
    /// line of the `.` that read it.
    fn list_at(&mut self, list: &CompoundList, line: usize) -> Flow {
        let saved = self.at_line.replace(line);
        let flow = self.list(list);
        self.at_line = saved;
        flow
    }

    fn has_command(&self, name: &str) -> bool {
        self.functions.contains_key(name)
            || BUILTINS.contains(&name)
            || self.command_path(name).is_some()
    }

    /// Where `command -v name` finds an executable, on dpkg's `PATH`.
    fn command_path(&self, name: &str) -> Option<String> {
        if name.contains('/') {
            return self
                .world
                .test_file(FileTest::Executable, name)
                .then(|| name.to_string());
        }
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| self.world.test_file(FileTest::Executable, p))
    }

    /// The output of `$(command -v NAME)` or `` `which NAME` `` (with its errors
    /// sent to /dev/null or not); None for any other substitution.
    fn substitution(&self, text: &str) -> Option<String> {
        let words: Vec<&str> = text
            .split_whitespace()
            .filter(|w| !matches!(*w, "2>/dev/null" | ">/dev/null" | "2>&1"))
            .collect();
        let name = match words.as_slice() {
            ["command", "-v", name] | ["which", name] => *name,
            // A temp file: gone by the end of the script.
            ["mktemp", ..] => return Some("/tmp/tmp.imgraph-mktemp".to_string()),
            _ => return None,
        };
        if self.functions.contains_key(name) || BUILTINS.contains(&name) {
            return Some(name.to_string());
        }
        Some(self.command_path(name).unwrap_or_default())
    }

    /// `test`/`[` with known arguments.
    fn test(&self, args: &[String]) -> Status {
        match brush_parser::test_command::parse(args) {
            Ok(expr) => self.test_expr(&expr),
            Err(_) => Status::Unknown,
        }
    }

    fn test_expr(&self, e: &TestExpr) -> Status {
        use brush_parser::ast::BinaryPredicate as B;
        match e {
            TestExpr::False => Status::False,
            TestExpr::Literal(s) => Status::of(!s.is_empty()),
            TestExpr::And(a, b) => match (self.test_expr(a), self.test_expr(b)) {
                (Status::False, _) | (_, Status::False) => Status::False,
                (Status::True, Status::True) => Status::True,
                _ => Status::Unknown,
            },
            TestExpr::Or(a, b) => match (self.test_expr(a), self.test_expr(b)) {
                (Status::True, _) | (_, Status::True) => Status::True,
                (Status::False, Status::False) => Status::False,
                _ => Status::Unknown,
            },
            TestExpr::Not(a) => self.test_expr(a).not(),
            TestExpr::Parenthesized(a) => self.test_expr(a),
            TestExpr::UnaryTest(p, s) => {
                let path = (!s.is_empty()).then(|| self.absolute(s)).flatten();
                let file = |t| match &path {
                    Some(p) => Status::of(self.world.test_file(t, p)),
                    None if s.is_empty() => Status::False,
                    None => Status::Unknown,
                };
                match p {
                    UnaryPredicate::StringHasZeroLength => Status::of(s.is_empty()),
                    UnaryPredicate::StringHasNonZeroLength => Status::of(!s.is_empty()),
                    UnaryPredicate::FileExists
                    | UnaryPredicate::FileExistsAndIsReadable
                    | UnaryPredicate::FileExistsAndIsWritable
                    | UnaryPredicate::FileExistsAndIsNotZeroLength => file(FileTest::Exists),
                    UnaryPredicate::FileExistsAndIsRegularFile => file(FileTest::File),
                    UnaryPredicate::FileExistsAndIsDir => file(FileTest::Dir),
                    UnaryPredicate::FileExistsAndIsSymlink => file(FileTest::Symlink),
                    UnaryPredicate::FileExistsAndIsExecutable => file(FileTest::Executable),
                    _ => Status::Unknown,
                }
            }
            TestExpr::BinaryTest(p, a, b) => match p {
                B::StringExactlyMatchesString | B::StringExactlyMatchesPattern => {
                    Status::of(a == b)
                }
                B::StringDoesNotExactlyMatchString | B::StringDoesNotExactlyMatchPattern => {
                    Status::of(a != b)
                }
                _ => match (a.parse::<i64>(), b.parse::<i64>()) {
                    (Ok(x), Ok(y)) => match p {
                        B::ArithmeticEqualTo => Status::of(x == y),
                        B::ArithmeticNotEqualTo => Status::of(x != y),
                        B::ArithmeticLessThan => Status::of(x < y),
                        B::ArithmeticLessThanOrEqualTo => Status::of(x <= y),
                        B::ArithmeticGreaterThan => Status::of(x > y),
                        B::ArithmeticGreaterThanOrEqualTo => Status::of(x >= y),
                        _ => Status::Unknown,
                    },
                    _ => Status::Unknown,
                },
            },
        }
    }

    /// A word's value, when every piece of it is known.
    fn expand(&self, w: &Word) -> Option<String> {
        let pieces = brush_parser::word::parse(&w.value, &super::parse::options()).ok()?;
        let mut out = String::new();
        for p in &pieces {
            self.piece(p, &mut out)?;
        }
        Some(out)
    }

    fn piece(&self, p: &WordPieceWithSource, out: &mut String) -> Option<()> {
        match &p.piece {
            WordPiece::Text(t) | WordPiece::SingleQuotedText(t) | WordPiece::AnsiCQuotedText(t) => {
                out.push_str(t)
            }
            WordPiece::EscapeSequence(e) => out.push_str(e.strip_prefix('\\').unwrap_or(e)),
            WordPiece::DoubleQuotedSequence(ps) | WordPiece::GettextDoubleQuotedSequence(ps) => {
                for p in ps {
                    self.piece(p, out)?;
                }
            }
            WordPiece::ParameterExpansion(e) => out.push_str(&self.parameter(e)?),
            WordPiece::CommandSubstitution(c) | WordPiece::BackquotedCommandSubstitution(c) => {
                out.push_str(&self.substitution(c)?)
            }
            WordPiece::TildeExpansion(_) | WordPiece::ArithmeticExpression(_) => return None,
        }
        Some(())
    }

    fn lookup(&self, p: &Parameter) -> Option<Option<String>> {
        match p {
            Parameter::Positional(n) => Some(self.args.get(*n as usize).cloned()),
            Parameter::Named(n) => self
                .vars
                .get(n)
                .cloned()
                .map_or(Some(None), |v| v.map(Some)),
            Parameter::Special(SpecialParameter::PositionalParameterCount) => {
                Some(Some((self.args.len() - 1).to_string()))
            }
            Parameter::Special(SpecialParameter::AllPositionalParameters { .. }) => {
                Some(Some(self.args[1..].join(" ")))
            }
            _ => None,
        }
    }

    fn parameter(&self, e: &ParameterExpr) -> Option<String> {
        match e {
            ParameterExpr::Parameter {
                parameter,
                indirect: false,
            } => Some(self.lookup(parameter)?.unwrap_or_default()),
            ParameterExpr::UseDefaultValues {
                parameter,
                indirect: false,
                default_value,
                ..
            } => match self.lookup(parameter)? {
                Some(v) if !v.is_empty() => Some(v),
                _ => {
                    let d = default_value.as_deref().unwrap_or("");
                    let w = Word {
                        value: d.to_string(),
                        loc: None,
                    };
                    self.expand(&w)
                }
            },
            _ => None,
        }
    }
}

/// Shell builtins `command -v` finds without a file.
const BUILTINS: &[&str] = &[
    "echo", "printf", "test", "[", "true", "false", ":", "set", "command", "type", "read",
    "export", "local", "cd", "exit", "return", "shift", "umask", "trap", "unset", ".",
];

/// A simple command's parts as they are read.
#[derive(Default)]
struct Parts {
    words: Vec<Option<String>>,
    line: usize,
    assignments: Vec<(String, Option<String>)>,
    writes: Option<String>,
}

/// The 1-based line a word starts on.
fn line_of(w: &Word) -> usize {
    w.loc.as_ref().map_or(0, |l| l.start.line)
}

/// `dpkg --compare-versions A OP B`: an empty version (no old version on a first
/// install) is earlier than every version, later for the `-nl` operators.
fn compare_versions(a: &str, op: &str, b: &str) -> Status {
    use crate::debian::version::Version;
    use std::cmp::Ordering;
    let nl = op.ends_with("-nl");
    let ord = match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => {
            if nl {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (false, true) => {
            if nl {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (false, false) => match (a.parse::<Version>(), b.parse::<Version>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => return Status::Unknown,
        },
    };
    Status::of(match op.trim_end_matches("-nl") {
        "lt" | "<<" => ord == Ordering::Less,
        "le" | "<=" | "<" => ord != Ordering::Greater,
        "eq" | "=" => ord == Ordering::Equal,
        "ne" => ord != Ordering::Equal,
        "ge" | ">=" | ">" => ord != Ordering::Less,
        "gt" | ">>" => ord == Ordering::Greater,
        _ => return Status::Unknown,
    })
}

/// A `case` pattern (`*`, `?`, `[...]`, literal text) against `s`.
pub(super) fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                    return s.first() == Some(&'[') && go(&p[1..], &s[1..]);
                };
                let Some(c) = s.first() else { return false };
                let (neg, set) = match p[1] {
                    '!' | '^' => (true, &p[2..end]),
                    _ => (false, &p[1..end]),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= *c && *c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == *c;
                        i += 1;
                    }
                }
                hit != neg && go(&p[end + 1..], &s[1..])
            }
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}
