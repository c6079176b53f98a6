//! `imgraph completions SHELL` and `imgraph man`.
//!
//! Completions are clap_complete's dynamic ones: the script a shell sources calls
//! back into `imgraph` (with `IMGRAPH_COMPLETE` set) on every TAB, so selectors and
//! step ids are completed from the manifest as it is now, not as it was when the
//! script was generated.

use std::ffi::OsString;

use clap::CommandFactory;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};
use clap_complete::CompleteEnv;

use crate::cli::{Cli, CompletionsArgs, ManArgs, Shell};
use crate::error::Error;
use crate::manifest;

/// The environment variable the completion scripts set when they call back.
const VAR: &str = "IMGRAPH_COMPLETE";

/// Answers a completion request when a completion script called back (with
/// `IMGRAPH_COMPLETE` set): `Some(exit status)` then, `None` for a normal run.
pub fn complete_from_env(args: &[OsString]) -> Option<i32> {
    std::env::var_os(VAR)?;
    let done = CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .try_complete(args.iter().cloned(), None);
    match done {
        Ok(true) => Some(0),
        Ok(false) => None,
        Err(e) => {
            let _ = e.print();
            Some(2)
        }
    }
}

pub(super) fn run(args: &CompletionsArgs) -> Result<(), Error> {
    let shell: &dyn EnvCompleter = match args.shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    let mut out = std::io::stdout().lock();
    let written = match args.shell {
        Shell::Bash => std::io::Write::write_all(&mut out, bash_registration().as_bytes()),
        _ => shell.write_registration(VAR, "imgraph", "imgraph", "imgraph", &mut out),
    };
    written.map_err(|e| Error::Stdout(e.into()))
}

/// clap_complete's bash script, made to work with step ids and selectors, which
/// contain `:`. Bash splits words at every character of `COMP_WORDBREAKS` (`:` by
/// default), so `layer:hello:one/s3` reaches a completion function as the words
/// `layer`, `:`, `hello`, `:`, `one/s3`, and readline replaces only the text after
/// the last `:`. The function glues such words back together (using `COMP_LINE` to
/// tell a glued `:` from one standing alone) before asking imgraph, then strips the
/// part up to the last `:` from every candidate, as bash-completion's
/// `__ltrim_colon_completions` does. It needs nothing from the bash-completion
/// package, so it works in a stock bash too.
fn bash_registration() -> String {
    r#"
_clap_complete_imgraph() {
    local IFS=$'\013'
    local _CLAP_COMPLETE_INDEX=${COMP_CWORD}
    local _CLAP_COMPLETE_COMP_TYPE=${COMP_TYPE}
    if compopt +o nospace 2> /dev/null; then
        local _CLAP_COMPLETE_SPACE=false
    else
        local _CLAP_COMPLETE_SPACE=true
    fi
    local words=("${COMP_WORDS[@]}")
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        words[COMP_CWORD]="$2"
    fi
    local cur=""
    if [[ $COMP_WORDBREAKS == *:* ]]; then
        # Rejoin the words bash split at `:`, up to the cursor.
        local line=${COMP_LINE:0:COMP_POINT} joined=() index=-1 i w blank ok=true
        for ((i = 0; i <= COMP_CWORD; i++)); do
            blank=false
            [[ $line == [[:blank:]]* ]] && blank=true
            line=${line#"${line%%[![:blank:]]*}"}
            if ((i < COMP_CWORD)); then
                w=${COMP_WORDS[i]}
                if [[ $line != "$w"* ]]; then
                    ok=false
                    break
                fi
                line=${line#"$w"}
            else
                w=$line
            fi
            if ((i > 0)) && [[ $blank == false ]] &&
                [[ $w == :* || ${joined[${#joined[@]}-1]} == *: ]]; then
                joined[${#joined[@]}-1]+=$w
            else
                joined+=("$w")
            fi
            ((i == COMP_CWORD)) && index=$((${#joined[@]} - 1))
        done
        if [[ $ok == true ]]; then
            words=("${joined[@]}" "${COMP_WORDS[@]:COMP_CWORD+1}")
            _CLAP_COMPLETE_INDEX=$index
            cur=${joined[index]}
        fi
    fi
    COMPREPLY=( $( \
        _CLAP_IFS="$IFS" \
        _CLAP_COMPLETE_INDEX="$_CLAP_COMPLETE_INDEX" \
        _CLAP_COMPLETE_COMP_TYPE="$_CLAP_COMPLETE_COMP_TYPE" \
        _CLAP_COMPLETE_SPACE="$_CLAP_COMPLETE_SPACE" \
        IMGRAPH_COMPLETE="bash" \
        "imgraph" -- "${words[@]}" \
    ) )
    if [[ $? != 0 ]]; then
        unset COMPREPLY
        return
    fi
    if [[ $cur == *:* ]]; then
        # Readline replaces only the text after the last `:`.
        local prefix=${cur%"${cur##*:}"} k
        for k in "${!COMPREPLY[@]}"; do
            COMPREPLY[k]=${COMPREPLY[k]#"$prefix"}
        done
    fi
    if [[ $_CLAP_COMPLETE_SPACE == false ]] && [[ "${COMPREPLY-}" =~ [=/:]$ ]]; then
        compopt -o nospace
    fi
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -o nospace -o bashdefault -o nosort -F _clap_complete_imgraph imgraph
else
    complete -o nospace -o bashdefault -F _clap_complete_imgraph imgraph
fi
"#
    .to_string()
}

pub(super) fn man(args: &ManArgs) -> Result<(), Error> {
    let mut root = Cli::command();
    // Building names subcommands `imgraph-build` and gives them the version.
    root.build();
    let cmd = match &args.command {
        None => root,
        Some(name) => {
            let Some(sub) = root.find_subcommand(name) else {
                let names: Vec<&str> = root.get_subcommands().map(|c| c.get_name()).collect();
                let hint = match manifest::diagnostic::did_you_mean(name, names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("commands: {}", names.join(", ")),
                };
                return Err(Error::Usage(format!(
                    "no command `{name}`\n  = help: {hint}"
                )));
            };
            sub.clone()
        }
    };
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(cmd)
        .source(format!("imgraph {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .map_err(|e| Error::Stdout(e.into()))
}
