//! Validated application and stream names.
//!
//! RTMP apps and stream names, and the `{app}/{stream}` parts of HTTP paths, come from the
//! network and end up in file paths (`--hls-dir`), map keys and URLs. They are checked once, where
//! they enter (RTMP `connect`/`publish`/`play`, HTTP paths, upstream pulls), into an [`AppName`]
//! or [`StreamName`]; paths, keys and URLs are built only from those types.
//!
//! A valid name is 1 to [`MAX_NAME_LEN`] bytes of `A-Z a-z 0-9 - _ .` that neither starts with
//! a dot nor holds `..`. It therefore holds no path separator, no `..` component, no NUL or control character,
//! and needs no escaping in a URL path.
//!
//! ```
//! use streamr_media::name::{AppName, StreamName};
//!
//! let app = AppName::parse("live").unwrap();
//! let name = StreamName::parse("show-1").unwrap();
//! assert_eq!(format!("{app}/{name}"), "live/show-1");
//! assert!(StreamName::parse("../../x").is_err());
//! assert!(AppName::parse("live/..").is_err());
//! ```

use std::fmt;
use std::ops::Deref;
use std::path::Path;

/// Longest application or stream name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{what} name is empty")]
    Empty {
        /// `app` or `stream`.
        what: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("{what} name is {len} bytes long; the limit is {max}")]
    TooLong {
        /// `app` or `stream`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside `A-Z a-z 0-9 - _ .`.
    #[error("{what} name has {found:?} at byte {offset}; only A-Z a-z 0-9 - _ . are allowed")]
    Character {
        /// `app` or `stream`.
        what: &'static str,
        /// The first refused character.
        found: char,
        /// Its byte offset in the name.
        offset: usize,
    },
    /// The name starts with a dot (`.`, `..`, hidden files).
    #[error("{what} name starts with a dot")]
    LeadingDot {
        /// `app` or `stream`.
        what: &'static str,
    },
    /// The name holds `..`.
    #[error("{what} name holds \"..\"")]
    DoubleDot {
        /// `app` or `stream`.
        what: &'static str,
    },
}

/// Checks `name` against the rules in the [module documentation](self).
fn validate(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if let Some((offset, found)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::Character {
            what,
            found,
            offset,
        });
    }
    if name.starts_with('.') {
        return Err(NameError::LeadingDot { what });
    }
    if name.contains("..") {
        return Err(NameError::DoubleDot { what });
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks `name` (see the [module documentation](self) for the rules).
            pub fn parse(name: &str) -> Result<Self, NameError> {
                validate($what, name)?;
                Ok(Self(name.to_owned()))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<Path> for $name {
            fn as_ref(&self) -> &Path {
                Path::new(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(name: &str) -> Result<Self, NameError> {
                Self::parse(name)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(name: &str) -> Result<Self, NameError> {
                Self::parse(name)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(name: String) -> Result<Self, NameError> {
                validate($what, &name)?;
                Ok(Self(name))
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }
    };
}

validated_name!(
    /// An RTMP application (`live` in `rtmp://host/live/show`), safe as a path component.
    AppName,
    "app"
);

validated_name!(
    /// A stream name (`show` in `rtmp://host/live/show`, without any `?query`), safe as a path
    /// component.
    StreamName,
    "stream"
);

#[cfg(test)]
mod tests {
    use std::path::Component;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in ["live", "show", "a", "cam_1", "stream-2.hd", "x.y.z", "A9"] {
            assert_eq!(StreamName::parse(name).unwrap().as_str(), name);
            assert_eq!(AppName::parse(name).unwrap().as_str(), name);
        }
        assert!(StreamName::parse(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn hostile_names_are_refused_with_the_reason() {
        let cases = [
            ("", NameError::Empty { what: "stream" }),
            ("..", NameError::LeadingDot { what: "stream" }),
            (".", NameError::LeadingDot { what: "stream" }),
            (".hidden", NameError::LeadingDot { what: "stream" }),
            ("a..b", NameError::DoubleDot { what: "stream" }),
            (
                "/",
                NameError::Character {
                    what: "stream",
                    found: '/',
                    offset: 0,
                },
            ),
            (
                "../../../x",
                NameError::Character {
                    what: "stream",
                    found: '/',
                    offset: 2,
                },
            ),
            (
                "a\\b",
                NameError::Character {
                    what: "stream",
                    found: '\\',
                    offset: 1,
                },
            ),
            (
                "a\0",
                NameError::Character {
                    what: "stream",
                    found: '\0',
                    offset: 1,
                },
            ),
            (
                "a\nb",
                NameError::Character {
                    what: "stream",
                    found: '\n',
                    offset: 1,
                },
            ),
            (
                "caf\u{e9}",
                NameError::Character {
                    what: "stream",
                    found: '\u{e9}',
                    offset: 3,
                },
            ),
        ];
        for (name, error) in cases {
            assert_eq!(StreamName::parse(name), Err(error), "{name:?}");
        }
        assert_eq!(
            AppName::parse(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong {
                what: "app",
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
    }

    proptest! {
        /// Whatever a peer sends, an accepted name is one normal path component that stays
        /// inside the directory it is joined to, with no control characters, within the length
        /// bound.
        #[test]
        fn accepted_names_are_single_safe_path_components(name in any::<String>()) {
            if let Ok(parsed) = StreamName::parse(&name) {
                prop_assert!(!parsed.is_empty() && parsed.len() <= MAX_NAME_LEN);
                prop_assert!(!parsed.chars().any(|c| c.is_control() || c == '/' || c == '\\'));
                prop_assert!(!parsed.contains(".."));
                let joined = Path::new("/srv/hls").join(&parsed);
                let components: Vec<_> = joined.components().collect();
                prop_assert_eq!(components.len(), 4);
                prop_assert!(matches!(components.last(), Some(Component::Normal(_))));
                let playlist = Path::new("/srv/hls").join(format!("{parsed}.m3u8"));
                prop_assert_eq!(playlist.parent(), Some(Path::new("/srv/hls")));
            }
        }

        /// Names built from path-like pieces (`..`, `/`, NUL, controls) are refused unless they
        /// are plain allowed characters.
        #[test]
        fn path_like_names_are_refused(
            pieces in proptest::collection::vec(
                prop_oneof![
                    Just("..".to_owned()),
                    Just("/".to_owned()),
                    Just("\\".to_owned()),
                    Just("\0".to_owned()),
                    Just("\u{1}".to_owned()),
                    "[a-z0-9_-]{0,4}",
                ],
                1..8,
            )
        ) {
            let name: String = pieces.concat();
            let hostile = name.is_empty()
                || name.starts_with('.')
                || name.contains("..")
                || name.contains(['/', '\\', '\0', '\u{1}']);
            prop_assert_eq!(StreamName::parse(&name).is_err(), hostile, "{:?}", name);
            prop_assert_eq!(AppName::parse(&name).is_err(), hostile, "{:?}", name);
        }

        /// Valid names round-trip through their text form.
        #[test]
        fn valid_names_round_trip(name in "[A-Za-z0-9_-]([A-Za-z0-9_-]|\\.[A-Za-z0-9_-]){0,60}") {
            let parsed = StreamName::parse(&name).unwrap();
            prop_assert_eq!(parsed.to_string(), name.clone());
            prop_assert_eq!(String::from(parsed), name);
        }
    }
}
