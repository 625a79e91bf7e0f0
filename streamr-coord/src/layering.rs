//! The module layering of this crate, checked: each layer may use the ones below it and none
//! above, so the import graph stays a DAG (see the crate docs for the map).

use std::path::{Path, PathBuf};

/// Each layer (a module file or directory under `src/`) and the modules it must not use.
const RULES: &[(&str, &[&str])] = &[
    (
        "state.rs",
        &["api", "dashboard", "router", "workers", "intake"],
    ),
    (
        "intake",
        &["api", "dashboard", "router", "workers", "state"],
    ),
    ("workers", &["api", "dashboard", "router"]),
    ("api", &["dashboard", "router"]),
    ("dashboard", &["router"]),
];

/// The `.rs` files of `layer` (a file, or every file below a directory).
fn sources(layer: &Path) -> Vec<PathBuf> {
    if layer.is_file() {
        return vec![layer.to_path_buf()];
    }
    let mut files = Vec::new();
    let mut pending = vec![layer.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The module paths `source` names after `crate::`, with `{…}` groups spelled out
/// (`crate::{a::B, c}` names `a::B` and `c`). Comments are left out.
fn crate_paths(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => paths.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if !(c == ',' && depth == 0) {
                    item.push(c);
                }
            }
            paths.push(item);
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(rest[..end].to_owned());
        }
    }
    paths
        .into_iter()
        .map(|path| path.split_whitespace().collect::<String>())
        .filter(|path| !path.is_empty())
        .collect()
}

fn uses(path: &str, module: &str) -> bool {
    path == module || path.starts_with(&format!("{module}::"))
}

#[test]
fn lower_layers_never_use_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (layer, forbidden) in RULES {
        for file in sources(&src.join(layer)) {
            let text = std::fs::read_to_string(&file).expect("source file");
            for path in crate_paths(&text) {
                for module in *forbidden {
                    if uses(&path, module) {
                        violations.push(format!("{}: crate::{path}", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "lower layers use higher ones:\n{}",
        violations.join("\n")
    );
}

#[test]
fn grouped_and_plain_crate_paths_are_both_seen() {
    let source = "use crate::{api::Shared, error::{ApiError, StorageError}};\n\
                  // crate::router in a comment\n\
                  let x = crate::workers::probe_result(y);";
    assert_eq!(
        crate_paths(source),
        [
            "api::Shared",
            "error::{ApiError,StorageError}",
            "workers::probe_result"
        ]
    );
}
