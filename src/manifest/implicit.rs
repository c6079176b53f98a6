//! Tables that TOML creates implicitly, read into spanned fields.
//!
//! `[images.x.rootfs.debian]` with no `[images.x.rootfs]` line is valid TOML:
//! the dotted header creates `rootfs` on the way. But such a table has no place
//! in the text, so the TOML reader hands it to `Spanned<T>` as a plain table and
//! serde fails with "expected a borrowed string". [`spanned_or_implicit`] reads
//! both forms; an implicit table gets an empty span at 0, which
//! [`locate_implicit`] then replaces with the span of the table's first header
//! below it (`[images.x.rootfs.debian]`), where a diagnostic should point.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::value::{MapAccessDeserializer, StringDeserializer};
use serde::de::{DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_spanned::__unstable as spanned;
use toml::Spanned;

use super::raw::RawManifest;

/// `#[serde(deserialize_with)]` for a `Spanned<T>` table field that may be implicit.
pub(crate) fn spanned_or_implicit<'de, D, T>(d: D) -> Result<Spanned<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_struct(
        spanned::NAME,
        &[
            spanned::START_FIELD,
            spanned::END_FIELD,
            spanned::VALUE_FIELD,
        ],
        SpannedOrPlain(PhantomData),
    )
}

struct SpannedOrPlain<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedOrPlain<T> {
    type Value = Spanned<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            // An empty implicit table: T decides whether that is acceptable.
            let value = T::deserialize(MapAccessDeserializer::new(map))?;
            return Ok(Spanned::new(0..0, value));
        };
        if first == spanned::START_FIELD {
            // The reader's spanned form: start, end, value, in that order.
            let start: usize = map.next_value()?;
            map.next_key::<String>()?;
            let end: usize = map.next_value()?;
            map.next_key::<String>()?;
            let value: T = map.next_value()?;
            return Ok(Spanned::new(start..end, value));
        }
        // A plain (implicit) table: hand T its keys, the first one included.
        let value = T::deserialize(MapAccessDeserializer::new(Prepend {
            first: Some(first),
            rest: map,
        }))?;
        Ok(Spanned::new(0..0, value))
    }
}

/// A map whose first key was already read.
struct Prepend<A> {
    first: Option<String>,
    rest: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Prepend<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(key) => {
                let key: StringDeserializer<A::Error> = key.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => self.rest.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.rest.next_value_seed(seed)
    }
}

/// Gives every implicit `rootfs` table of `raw` the span of the first header
/// or key below it in `text`.
pub(crate) fn locate_implicit(raw: &mut RawManifest, text: &str) {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        return;
    };
    for (name, image) in raw.images.iter_mut() {
        let image = image.get_mut();
        if image.rootfs.span() != (0..0) {
            continue;
        }
        let span = doc
            .as_table()
            .get("images")
            .and_then(|i| i.get(name.get_ref().as_str()))
            .and_then(|i| i.get("rootfs"))
            .and_then(first_span_below);
        if let Some(span) = span {
            let rootfs =
                std::mem::replace(&mut image.rootfs, Spanned::new(0..0, Default::default()));
            image.rootfs = Spanned::new(span, rootfs.into_inner());
        }
    }
}

/// The earliest span of a table's children (a sub-table's header, or a key).
fn first_span_below(item: &toml_edit::Item) -> Option<Range<usize>> {
    let table = item.as_table_like()?;
    table
        .iter()
        .filter_map(|(key, child)| {
            child
                .as_table()
                .and_then(|t| t.span())
                .or_else(|| table.key(key).and_then(|k| k.span()))
        })
        .min_by_key(|r| r.start)
}
