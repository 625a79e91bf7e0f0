//! What every StreamrP2P binary's command line shares (feature `cli`): a TOML config file
//! whose keys are the long flag names, duration parsers that refuse zero and absurd values, the
//! check that every flag has its `STREAMR_*` variable, and the flag tables of
//! `docs/operators.md`, generated from clap's own definition. The binaries' unit tests hold
//! their commands to these through `streamr-test-support`'s `cli` module.
//!
//! Precedence is flag > environment > config file > default: [`with_config_file`] adds a
//! file value to the command line only for flags given neither on it nor in their variable.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};

/// The variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "STREAMR_CONFIG";

/// Why a config file could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: toml::de::Error,
    },
    /// A key names no flag of this binary.
    #[error(
        "config file {path}: unknown key {key:?} (keys are long flag names, like `http-listen`)"
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value is a table or a date.
    #[error("config file {path}: {key:?} must be a string, number, boolean or array of them")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
}

/// The config file `args` name with `--config PATH` / `--config=PATH`, else [`CONFIG_ENV`].
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Whether the command line already gives `arg` (by its long name, an alias or its short
/// letter).
fn given(args: &[OsString], arg: &clap::Arg) -> bool {
    let mut names: Vec<&str> = arg.get_long().into_iter().collect();
    names.extend(arg.get_all_aliases().unwrap_or_default());
    let mut shorts: Vec<char> = arg.get_short().into_iter().collect();
    shorts.extend(arg.get_all_short_aliases().unwrap_or_default());
    args.iter().skip(1).filter_map(|a| a.to_str()).any(|a| {
        let long = names.iter().any(|name| {
            a.strip_prefix("--")
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
        });
        let short = !a.starts_with("--")
            && a.strip_prefix('-')
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| shorts.contains(&c));
        long || short
    })
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The command-line words that give `arg` the file's `value`.
fn words(arg: &clap::Arg, long: &str, value: &toml::Value) -> Option<Vec<OsString>> {
    let flag = OsString::from(format!("--{long}"));
    let values: Vec<&toml::Value> = match value {
        toml::Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for value in values {
        if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            let on = value.as_bool()?;
            let wanted = matches!(arg.get_action(), ArgAction::SetTrue);
            if on == wanted {
                out.push(flag.clone());
            }
            continue;
        }
        out.push(flag.clone());
        out.push(OsString::from(scalar(value)?));
    }
    Some(out)
}

/// The subcommand `args` select, if `command` has any.
fn active_subcommand<'a>(command: &'a Command, args: &[OsString]) -> Option<&'a Command> {
    args.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find_map(|a| command.find_subcommand(a))
}

/// `args` with the config file's values added (see the module documentation); `args`
/// unchanged when no file is named.
pub fn with_config_file(
    command: &Command,
    args: Vec<OsString>,
) -> Result<Vec<OsString>, ConfigFileError> {
    let Some(path) = config_path(&args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigFileError::Parse {
        path: path.clone(),
        source,
    })?;
    let sub = active_subcommand(command, &args);
    let mut top: Vec<OsString> = Vec::new();
    let mut tail: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        let find = |c: &Command| {
            c.get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()))
                .cloned()
        };
        let (arg, in_sub) = match sub.and_then(find) {
            Some(arg) => (arg, true),
            None => match find(command) {
                Some(arg) => (arg, false),
                None => {
                    return Err(ConfigFileError::UnknownKey {
                        path,
                        key: key.clone(),
                    })
                }
            },
        };
        if key == "config" || given(&args, &arg) {
            continue;
        }
        if arg
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|v| !v.is_empty())
        {
            continue;
        }
        let words = words(&arg, key, value).ok_or_else(|| ConfigFileError::BadValue {
            path: path.clone(),
            key: key.clone(),
        })?;
        if in_sub {
            tail.extend(words);
        } else {
            top.extend(words);
        }
    }
    let mut out = Vec::with_capacity(args.len() + top.len() + tail.len());
    let mut iter = args.into_iter();
    out.extend(iter.next());
    out.extend(top);
    out.extend(iter);
    out.extend(tail);
    Ok(out)
}

/// The flags of `command` (and of its subcommands) that break the convention: a long flag
/// without a `STREAMR_*` variable. Hidden (deprecated) flags are exempt.
pub fn convention_violations(command: &Command) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, c: &Command| {
        for arg in c.get_arguments().filter(|a| documented(a)) {
            let long = arg.get_long().unwrap_or_default();
            match arg.get_env().and_then(OsStr::to_str) {
                Some(env) if env.starts_with("STREAMR_") => {}
                Some(env) => out.push(format!("{name} --{long}: variable {env} is not STREAMR_*")),
                None => out.push(format!("{name} --{long} has no STREAMR_* variable")),
            }
        }
    };
    check(command.get_name(), command);
    for sub in command.get_subcommands() {
        check(&format!("{} {}", command.get_name(), sub.get_name()), sub);
    }
    out
}

/// A duration flag's value: humantime (`30s`, `1m`), or a bare number of seconds as the older
/// `-secs` flags took.
pub fn seconds_or_duration(value: &str) -> Result<std::time::Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(secs) => Ok(std::time::Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(value).map_err(|error| error.to_string()),
    }
}

/// The longest value [`positive_duration`], [`duration_at_least`] and [`bounded_duration`] take:
/// a year (humantime's `1year`). Longer is a typo, and a deadline that far off overflows the
/// clock.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(31_557_600);

/// A duration flag's `value_parser` where zero means nothing: a deadline, period, grace or
/// window, in humantime (`30s`, `250ms`), from [`MIN_DEADLINE`](crate::MIN_DEADLINE) to
/// [`MAX_DURATION`]. clap's error names the flag, for its variable and a config file too.
pub fn positive_duration(value: &str) -> Result<std::time::Duration, String> {
    duration_at_least(value, crate::MIN_DEADLINE)
}

/// Like [`positive_duration`], with a floor of `min` (e.g. a port-mapping lease counted in
/// whole seconds).
pub fn duration_at_least(
    value: &str,
    min: std::time::Duration,
) -> Result<std::time::Duration, String> {
    let duration = bounded_duration(value)?;
    if duration < min {
        return Err(format!(
            "must be at least {}: a deadline or period that short cannot work (zero does not \
             turn it off)",
            humantime::format_duration(min)
        ));
    }
    Ok(duration)
}

/// A duration flag's `value_parser` where zero means something (off, at once, derived): any
/// humantime duration up to [`MAX_DURATION`].
pub fn bounded_duration(value: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|error| error.to_string())?;
    if duration > MAX_DURATION {
        return Err(format!(
            "must be at most {}",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(duration)
}

fn documented(arg: &clap::Arg) -> bool {
    !arg.is_hide_set()
        && arg.get_long().is_some()
        && !matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
}

fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The markdown flag table of one command: flag, variable, default, help.
pub fn flags_table(command: &Command) -> String {
    let mut out =
        String::from("| Flag | Variable | Default | Meaning |\n| --- | --- | --- | --- |\n");
    for arg in command.get_arguments().filter(|a| documented(a)) {
        let long = arg.get_long().unwrap_or_default();
        let env = arg
            .get_env()
            .and_then(OsStr::to_str)
            .map_or_else(|| "—".to_owned(), |e| format!("`{e}`"));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            "—".to_owned()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        out.push_str(&format!(
            "| `--{long}` | {env} | {default} | {} |\n",
            cell(&help)
        ));
    }
    out
}

/// Every table a binary documents: its own flags and, per subcommand, the subcommand's, keyed
/// by the names the docs mark them with (`streamr-node`, `streamr demo`).
pub fn flags_tables(command: &Command) -> Vec<(String, String)> {
    let name = command.get_name().to_owned();
    let mut out = Vec::new();
    if command.get_arguments().any(documented) {
        out.push((name.clone(), flags_table(command)));
    }
    for sub in command.get_subcommands() {
        out.push((format!("{name} {}", sub.get_name()), flags_table(sub)));
    }
    out
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- flags: {name} -->\n"),
        format!("<!-- /flags: {name} -->"),
    )
}

/// The flags named in a markdown table (`--flag` in the first column).
fn flags_in(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| `--"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// Checks that the docs at `path` hold exactly the generated flag tables of `command`; with
/// `STREAMR_UPDATE_DOCS=1` rewrites them instead. The error names every flag missing from
/// (or documented but not in) each table.
pub fn check_docs(command: &Command, path: &Path) -> Result<(), String> {
    let mut doc =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let update = std::env::var("STREAMR_UPDATE_DOCS").as_deref() == Ok("1");
    let mut problems = Vec::new();
    for (name, table) in flags_tables(command) {
        let (open, close) = markers(&name);
        let Some(start) = doc.find(&open).map(|i| i + open.len()) else {
            problems.push(format!(
                "{} has no flag table for {name}: add the lines `{}` and `{close}`",
                path.display(),
                open.trim_end()
            ));
            continue;
        };
        let Some(end) = doc[start..].find(&close).map(|i| i + start) else {
            problems.push(format!(
                "{}: {name}'s table has no `{close}`",
                path.display()
            ));
            continue;
        };
        let documented = &doc[start..end];
        if documented == table {
            continue;
        }
        if update {
            doc.replace_range(start..end, &table);
            continue;
        }
        let (want, have) = (flags_in(&table), flags_in(documented));
        let missing: Vec<&String> = want.iter().filter(|f| !have.contains(f)).collect();
        let extra: Vec<&String> = have.iter().filter(|f| !want.contains(f)).collect();
        let mut problem = format!("the flag table of {name} in {} is stale:", path.display());
        for flag in missing {
            problem.push_str(&format!(" --{flag} is missing from the {name} table;"));
        }
        for flag in extra {
            problem.push_str(&format!(
                " --{flag} is documented but {name} has no such flag;"
            ));
        }
        problem.push_str(" (help, variables or defaults may differ too)");
        problems.push(problem);
    }
    if update {
        std::fs::write(path, doc).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.push(
            "regenerate with STREAMR_UPDATE_DOCS=1 and the same cargo test command".to_owned(),
        );
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn command() -> Command {
        Command::new("demo-bin")
            .arg(
                Arg::new("listen")
                    .long("listen")
                    .env("STREAMR_TEST_LISTEN_X")
                    .default_value("a"),
            )
            .arg(
                Arg::new("trial")
                    .long("trial")
                    .env("STREAMR_TEST_TRIAL_X")
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("peer")
                    .long("peer")
                    .env("STREAMR_TEST_PEER_X")
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("duration")
                    .short('d')
                    .long("duration")
                    .env("STREAMR_TEST_DURATION_X"),
            )
            .arg(
                Arg::new("config")
                    .long("config")
                    .env("STREAMR_TEST_CONFIG_X"),
            )
    }

    #[test]
    fn duration_parsers_refuse_zero_and_absurd_values_naming_the_flag() {
        use std::time::Duration;
        assert_eq!(positive_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(positive_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(positive_duration("1year"), Ok(MAX_DURATION));
        for bad in ["0", "0s", "999us", "2years", "600000000000years", "soon"] {
            assert!(positive_duration(bad).is_err(), "{bad} accepted");
        }
        assert!(positive_duration("0s")
            .unwrap_err()
            .contains("at least 1ms"));
        assert_eq!(bounded_duration("0s"), Ok(Duration::ZERO));
        assert!(bounded_duration("2years")
            .unwrap_err()
            .contains("at most 1year"));
        assert!(duration_at_least("500ms", Duration::from_secs(1)).is_err());
        assert_eq!(
            duration_at_least("1s", Duration::from_secs(1)),
            Ok(Duration::from_secs(1))
        );
        // As a value_parser: clap's error names the flag, whether the value came from the
        // command line or from the variable (this test's own, read by no other test; clap
        // reads it when the argument is built).
        let command = || {
            Command::new("demo-bin").arg(
                Arg::new("write-timeout")
                    .long("write-timeout")
                    .env("STREAMR_TEST_WRITE_TIMEOUT_X")
                    .value_parser(positive_duration),
            )
        };
        let error = command()
            .try_get_matches_from(["demo-bin", "--write-timeout", "0s"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--write-timeout"), "{error}");
        assert!(error.contains("at least 1ms"), "{error}");
        std::env::set_var("STREAMR_TEST_WRITE_TIMEOUT_X", "0");
        let from_env = command().try_get_matches_from(["demo-bin"]);
        std::env::set_var("STREAMR_TEST_WRITE_TIMEOUT_X", "5s");
        let valid = command().try_get_matches_from(["demo-bin"]);
        std::env::remove_var("STREAMR_TEST_WRITE_TIMEOUT_X");
        let error = from_env.unwrap_err().to_string();
        assert!(error.contains("--write-timeout"), "{error}");
        assert!(error.contains("at least 1ms"), "{error}");
        assert_eq!(
            valid.unwrap().get_one::<Duration>("write-timeout"),
            Some(&Duration::from_secs(5))
        );
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_values_fill_in_only_what_the_command_line_leaves_out() {
        let dir = tempfile_dir();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"b\"\ntrial = true\npeer = [\"x\", \"y\"]\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let args = with_config_file(&command(), os(&["bin", "--config", path])).unwrap();
        assert_eq!(&args[..1], os(&["bin"]).as_slice());
        assert_eq!(args.len(), 10, "{args:?}");
        let matches = command().get_matches_from(args);
        assert_eq!(matches.get_one::<String>("listen").unwrap(), "b");
        assert!(matches.get_flag("trial"));
        let peers: Vec<&String> = matches.get_many::<String>("peer").unwrap().collect();
        assert_eq!(peers, ["x", "y"]);
        std::fs::write(&file, "listen = \"b\"\nduration = \"5s\"\n").unwrap();
        let short =
            with_config_file(&command(), os(&["bin", "-d", "1s", "--config", path])).unwrap();
        let matches = command().get_matches_from(short);
        assert_eq!(
            matches.get_one::<String>("duration").unwrap(),
            "1s",
            "-d beats the file"
        );
        let flag_wins =
            with_config_file(&command(), os(&["bin", "--listen=c", "--config", path])).unwrap();
        let matches = command().get_matches_from(flag_wins);
        assert_eq!(matches.get_one::<String>("listen").unwrap(), "c");
        std::fs::write(&file, "nope = 1\n").unwrap();
        let unknown = with_config_file(&command(), os(&["bin", "--config", path]));
        assert!(matches!(unknown, Err(ConfigFileError::UnknownKey { key, .. }) if key == "nope"));
    }

    #[test]
    fn tables_list_every_flag_and_the_check_names_what_is_missing() {
        let table = flags_table(&command());
        assert!(
            table.contains("| `--listen` | `STREAMR_TEST_LISTEN_X` | `a` |"),
            "{table}"
        );
        assert_eq!(
            flags_in(&table),
            ["listen", "trial", "peer", "duration", "config"]
        );
        let dir = tempfile_dir();
        let doc = dir.join("doc.md");
        std::fs::write(
            &doc,
            "x\n<!-- flags: demo-bin -->\n| `--listen` | |\n| `--gone` | |\n<!-- /flags: demo-bin -->\n",
        )
        .unwrap();
        let error = check_docs(&command(), &doc).unwrap_err();
        assert!(
            error.contains("--trial is missing from the demo-bin table"),
            "{error}"
        );
        assert!(
            error.contains("--gone is documented but demo-bin has no such flag"),
            "{error}"
        );
        assert!(convention_violations(&command()).is_empty());
        let bad = Command::new("b").arg(Arg::new("x").long("x"));
        assert_eq!(
            convention_violations(&bad),
            ["b --x has no STREAMR_* variable"]
        );
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "streamr-net-cli-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
