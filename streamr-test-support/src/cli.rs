//! The binaries' command lines held to the workspace's conventions in their unit tests
//! (feature `cli`): every flag has its `STREAMR_*` variable and a row in the docs' flag tables,
//! and every duration flag refuses a zero it cannot mean.

use std::path::Path;

use clap::Command;
use streamr_net::cli::{check_docs, convention_violations};

/// Panics unless every flag of `command` follows the convention and
/// the docs at `docs` hold exactly its generated flag tables (`STREAMR_UPDATE_DOCS=1` rewrites
/// them instead).
pub fn assert_documented(command: &Command, docs: &Path) {
    let violations = convention_violations(command);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    if let Err(problems) = check_docs(command, docs) {
        panic!("{problems}");
    }
}

/// Panics unless every duration flag of `command` (a long flag that
/// takes `5s` but not `soon`) refuses `0s`, `999us` and `2years` with an error naming the flag
/// and takes `1s`, except the flags in `zero_allowed` (`--batch-delay`), whose zero means
/// something: those take `0s`; and unless every flag of `expected` is among the duration flags
/// found (so a flag whose parser lost its check fails here). Returns the flags found.
pub fn assert_zero_durations_refused(
    command: &Command,
    zero_allowed: &[&str],
    expected: &[&str],
) -> Vec<String> {
    let name = command.get_name().to_owned();
    let parse = |flag: &str, value: &str| {
        command
            .clone()
            .try_get_matches_from([name.as_str(), flag, value])
            .map(|_| ())
            .map_err(|error| error.to_string())
    };
    let mut found = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if !arg.get_action().takes_values() {
            continue;
        }
        let flag = format!("--{long}");
        if parse(&flag, "5s").is_err() || parse(&flag, "soon").is_ok() {
            continue;
        }
        let mut too_long = vec!["2years"];
        if zero_allowed.contains(&flag.as_str()) {
            assert_eq!(parse(&flag, "0s"), Ok(()), "{flag}: zero means something");
        } else {
            too_long.extend(["0s", "999us"]);
            assert_eq!(parse(&flag, "1s"), Ok(()), "{flag} 1s");
        }
        for value in too_long {
            match parse(&flag, value) {
                Ok(()) => panic!("{flag} {value} was accepted"),
                Err(error) => assert!(error.contains(&flag), "{flag} {value}: {error}"),
            }
        }
        found.push(flag);
    }
    for flag in zero_allowed.iter().chain(expected) {
        assert!(
            found.iter().any(|f| f == flag),
            "{flag} is no checked duration flag: {found:?}"
        );
    }
    found
}
