//! serde over located nodes: typed values from the tree, every error pinned to the node it concerns.

use std::fmt;

use serde::de::{self, DeserializeOwned, Visitor};

use super::diag::{Diagnostic, nearest};
use super::source::Span;
use super::tree::{Node, Value};

/// Deserializes `T` from `node`; the error points at the offending key or value.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, Diagnostic> {
    T::deserialize(NodeDe(node)).map_err(Error::into_diagnostic)
}

#[derive(Debug)]
pub struct Error {
    span: Option<Span>,
    message: String,
    expected: Option<String>,
    found: Option<String>,
    help: Option<String>,
}

impl Error {
    fn new(message: String) -> Error {
        Error { span: None, message, expected: None, found: None, help: None }
    }

    fn located(mut self, span: Span) -> Error {
        self.span.get_or_insert(span);
        self
    }

    fn into_diagnostic(self) -> Diagnostic {
        let mut d = Diagnostic::new(self.message);
        d.span = self.span;
        d.expected = self.expected;
        d.found = self.found;
        d.help = self.help;
        d
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!("one of {}", quoted.join(", "))
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error::new(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Error {
        let mut e = Error::new("wrong type".into());
        e.expected = Some(exp.to_string());
        e.found = Some(unexp.to_string());
        e
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Error {
        let mut e = Error::new("invalid value".into());
        e.expected = Some(exp.to_string());
        e.found = Some(unexp.to_string());
        e
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Error {
        let mut e = Error::new(format!("unknown key `{field}`"));
        e.expected = Some(one_of(expected));
        e.help = nearest(field, expected.iter().copied()).map(|n| format!("did you mean `{n}`?"));
        e
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Error {
        let mut e = Error::new(format!("unknown value `{variant}`"));
        e.expected = Some(one_of(expected));
        e.help = nearest(variant, expected.iter().copied()).map(|n| format!("did you mean `{n}`?"));
        e
    }

    fn missing_field(field: &'static str) -> Error {
        let mut e = Error::new(format!("missing key `{field}`"));
        e.help = Some(format!("add `{field}:` here"));
        e
    }

    fn duplicate_field(field: &'static str) -> Error {
        Error::new(format!("duplicate key `{field}`"))
    }
}

/// A borrowed node as a serde deserializer.
pub struct NodeDe<'a>(pub &'a Node);

impl<'a> NodeDe<'a> {
    fn wrong_type(&self, expected: &str) -> Error {
        let mut e = Error::new("wrong type".into()).located(self.0.span);
        e.expected = Some(expected.into());
        e.found = Some(self.0.describe());
        e
    }

    fn scalar(&self, expected: &str) -> Result<&'a str, Error> {
        match &self.0.value {
            Value::Scalar { text, .. } => Ok(text),
            _ => Err(self.wrong_type(expected)),
        }
    }

    fn parse<T: std::str::FromStr>(&self, expected: &str) -> Result<T, Error> {
        let text = self.scalar(expected)?;
        text.trim().replace('_', "").parse().map_err(|_| self.wrong_type(expected))
    }
}

macro_rules! number {
    ($method:ident, $visit:ident, $ty:ty, $what:literal) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let n: $ty = self.parse($what)?;
            visitor.$visit::<Error>(n).map_err(|e| e.located(self.0.span))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let span = self.0.span;
        let result = match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Scalar { text, plain: true } => {
                if let Ok(b) = text.parse::<bool>() {
                    visitor.visit_bool(b)
                } else if let Ok(i) = text.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(f) = text.parse::<f64>() {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(text)
                }
            }
            Value::Scalar { text, plain: false } => visitor.visit_str(text),
            Value::Seq(items) => visitor.visit_seq(SeqAccess { items: items.iter() }),
            Value::Map(entries) => visitor.visit_map(MapAccess { entries: entries.iter(), value: None }),
        };
        result.map_err(|e| e.located(span))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let b = match self.scalar("true or false")? {
            "true" | "True" | "TRUE" | "yes" => true,
            "false" | "False" | "FALSE" | "no" => false,
            _ => return Err(self.wrong_type("true or false")),
        };
        visitor.visit_bool(b)
    }

    number!(deserialize_i8, visit_i8, i8, "an integer");
    number!(deserialize_i16, visit_i16, i16, "an integer");
    number!(deserialize_i32, visit_i32, i32, "an integer");
    number!(deserialize_i64, visit_i64, i64, "an integer");
    number!(deserialize_u8, visit_u8, u8, "a non-negative integer");
    number!(deserialize_u16, visit_u16, u16, "a non-negative integer (0 to 65535)");
    number!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    number!(deserialize_u64, visit_u64, u64, "a non-negative integer");
    number!(deserialize_f32, visit_f32, f32, "a number");
    number!(deserialize_f64, visit_f64, f64, "a number");

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = self.scalar("text")?;
        visitor.visit_str::<Error>(text).map_err(|e| e.located(self.0.span))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.wrong_type("nothing (null)")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.0.value {
            Value::Seq(items) => {
                visitor.visit_seq(SeqAccess { items: items.iter() }).map_err(|e| e.located(self.0.span))
            }
            _ => Err(self.wrong_type("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.0.value {
            Value::Map(entries) => visitor
                .visit_map(MapAccess { entries: entries.iter(), value: None })
                .map_err(|e| e.located(self.0.span)),
            // `key:` with nothing after it reads as an empty mapping.
            Value::Null => visitor.visit_map(MapAccess { entries: [].iter(), value: None }),
            _ => Err(self.wrong_type("a mapping")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let span = self.0.span;
        match &self.0.value {
            Value::Scalar { text, .. } => visitor
                .visit_enum(de::IntoDeserializer::<Error>::into_deserializer(text.as_str()))
                .map_err(|e: Error| e.located(span)),
            Value::Map(entries) if entries.len() == 1 => {
                visitor.visit_enum(EnumAccess { key: &entries[0].0, value: &entries[0].1 }).map_err(|e| e.located(span))
            }
            _ => Err(self.wrong_type("a name, or a mapping with a single key")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(node) => seed.deserialize(NodeDe(node)).map(Some).map_err(|e| e.located(node.span)),
            None => Ok(None),
        }
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, &'a Node)>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some((key, value));
                seed.deserialize(NodeDe(key)).map(Some).map_err(|e| e.located(key.span))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, node) = self.value.take().expect("serde asks for a value after its key");
        seed.deserialize(NodeDe(node)).map_err(|mut e| {
            if e.message == "wrong type" || e.message == "invalid value" {
                e.message = format!("{} for `{}`", e.message, key.as_str().unwrap_or_default());
            }
            e.located(node.span)
        })
    }
}

struct EnumAccess<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAccess<'a> {
    type Error = Error;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: de::DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, NodeDe<'a>), Error> {
        let variant = seed.deserialize(NodeDe(self.key)).map_err(|e| e.located(self.key.span))?;
        Ok((variant, NodeDe(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::super::tree::parse;
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only the errors matter here")]
    struct Stage {
        name: String,
        #[serde(default)]
        retries: u32,
    }

    fn load(text: &str) -> Result<Vec<Stage>, Diagnostic> {
        from_node(&parse(text).unwrap())
    }

    #[test]
    fn unknown_key_points_at_the_key_with_a_suggestion() {
        let err = load("- name: a\n  retires: 3\n").unwrap_err();
        assert_eq!(err.message, "unknown key `retires`");
        assert_eq!(err.span, Some(Span::new(2, 3, 7)));
        assert_eq!(err.help.as_deref(), Some("did you mean `retries`?"));
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let err = load("- name: a\n  retries: many\n").unwrap_err();
        assert_eq!(err.span, Some(Span::new(2, 12, 4)));
        assert_eq!(err.found.as_deref(), Some("`many`"));
    }

    #[test]
    fn missing_key_points_at_the_mapping() {
        let err = load("- retries: 1\n").unwrap_err();
        assert_eq!(err.message, "missing key `name`");
        assert_eq!(err.span.unwrap().line, 1);
    }
}
