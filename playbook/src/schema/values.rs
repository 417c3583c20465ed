//! Value types of playbook properties, with Choria's leniencies: text fields take numbers and
//! booleans as their text, seconds and counts may be numeric strings (an embedded template
//! expands to text), and lists of names may be one comma-separated string.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::{Map, Value};

/// Text; numbers and booleans are read as their text (Ruby's `to_s`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Text(pub(crate) String);

impl Text {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text of an optional property.
pub(crate) fn text(value: &Option<Text>) -> Option<String> {
    value.as_ref().map(|t| t.0.clone())
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
        Ok(Text(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Ok(Text(crate::template::stringify(&Value::from(v))))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// A non-negative number of seconds: a number or a numeric string; negative values are made
/// positive (as Choria did).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seconds(pub(crate) f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds((v as f64).abs()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                if v.is_finite() {
                    Ok(Seconds(v.abs()))
                } else {
                    Err(E::invalid_value(Unexpected::Float(v), &self))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                match v.trim().parse::<f64>() {
                    Ok(f) if f.is_finite() => Ok(Seconds(f.abs())),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer, or a string holding one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Int(pub(crate) i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.trim()
                    .parse()
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean, or the string `true` or `false` (what an embedded template expands to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Flag(pub(crate) bool);

/// An optional flag's value, `default` when absent.
pub(crate) fn flag(value: Option<Flag>, default: bool) -> bool {
    value.map_or(default, |f| f.0)
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                match v.trim() {
                    "true" => Ok(Flag(true)),
                    "false" => Ok(Flag(false)),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of names: a list of scalars, or one string of comma-separated names (a template of
/// an Array input embedded in text expands to `a, b`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Names(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names(
                    v.split(',')
                        .map(|n| n.trim().to_string())
                        .filter(|n| !n.is_empty())
                        .collect(),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Text>()? {
                    out.push(item.0);
                }
                Ok(Names(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A hash of any values.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Hash(pub(crate) Map<String, Value>);

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hash")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Hash, A::Error> {
                let mut out = Map::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.insert(k, v);
                }
                Ok(Hash(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A hash whose values are used as text (headers, environment variables).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TextMap(pub(crate) Vec<(String, String)>);

/// The pairs of an optional text map.
pub(crate) fn pairs(value: &Option<TextMap>) -> Vec<(String, String)> {
    value.as_ref().map(|m| m.0.clone()).unwrap_or_default()
}

impl<'de> Deserialize<'de> for TextMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Hash(map) = Hash::deserialize(d)?;
        Ok(TextMap(
            map.iter()
                .map(|(k, v)| (k.clone(), crate::template::stringify(v)))
                .collect(),
        ))
    }
}

/// A list of items of one type.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ListOf<T>(pub(crate) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ListOf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = ListOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListOf<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<T>()? {
                    out.push(item);
                }
                Ok(ListOf(out))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// Reads one of a closed set of words (`names[i]` gives `values[i]`); any scalar is read as
/// text first, so `method: 1` is reported as an unknown method, not a type error.
pub(crate) fn one_of<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    names: &'static [&'static str],
    values: &[T],
    ignore_case: bool,
) -> Result<T, D::Error> {
    let Text(word) = Text::deserialize(d)?;
    names
        .iter()
        .position(|n| {
            if ignore_case {
                n.eq_ignore_ascii_case(&word)
            } else {
                *n == word
            }
        })
        .and_then(|i| values.get(i).copied())
        .ok_or_else(|| de::Error::unknown_variant(&word, names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn de<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn leniencies() {
        assert_eq!(de::<Text>(json!(10)), Ok(Text("10".into())));
        assert_eq!(de::<Text>(json!(1.5)), Ok(Text("1.5".into())));
        assert!(de::<Text>(json!([1])).is_err());
        assert_eq!(de::<Seconds>(json!("-2.5")), Ok(Seconds(2.5)));
        assert_eq!(
            de::<Seconds>(json!("soon")),
            Err("invalid value: string \"soon\", expected a number of seconds".into())
        );
        assert_eq!(de::<Int>(json!(" 3 ")), Ok(Int(3)));
        assert!(de::<Int>(json!(1.5)).is_err());
        assert_eq!(de::<Flag>(json!("false")), Ok(Flag(false)));
        assert!(de::<Flag>(json!("yes please")).is_err());
        assert_eq!(
            de::<Names>(json!("a, b,,c")),
            Ok(Names(vec!["a".into(), "b".into(), "c".into()]))
        );
        assert_eq!(
            de::<Names>(json!(["a", 1])),
            Ok(Names(vec!["a".into(), "1".into()]))
        );
        assert_eq!(
            de::<TextMap>(json!({"A": 1})),
            Ok(TextMap(vec![("A".into(), "1".into())]))
        );
        assert_eq!(
            de::<Hash>(json!("x")),
            Err("invalid type: string \"x\", expected a hash".into())
        );
    }
}
