//! Reads one part of the TOML file again, from its text, only to say where a mistake in it is:
//! the error of a structured section (`[[routes]]`, `[[admin.tokens]]` ...) then names the line
//! and column, as parsing the whole file into one typed struct used to.
//!
//! Owns nothing but that lookup. It must never be the way a value is read: the reader reads the
//! parsed table, and this runs only once that has failed.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The error deserializing the value at `path` (dotted) of `text` as `T` gives, with its
/// position; `None` when that succeeds or the text cannot be read this way.
pub(super) fn locate<T: DeserializeOwned>(text: &str, path: &str) -> Option<toml::de::Error> {
    let keys: Vec<&str> = path.split('.').collect();
    let document = toml::de::Deserializer::parse(text).ok()?;
    At::<T> {
        keys: &keys,
        wanted: PhantomData,
    }
    .deserialize(document)
    .err()
}

/// Walks down `keys`, skipping every other entry, and deserializes what it finds as `T`.
struct At<'k, T> {
    keys: &'k [&'k str],
    wanted: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for At<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.keys {
            [] => T::deserialize(d).map(drop),
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for At<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.keys.split_first() else {
            return Ok(());
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == *first {
                map.next_value_seed(At::<T> {
                    keys: rest,
                    wanted: PhantomData,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}
