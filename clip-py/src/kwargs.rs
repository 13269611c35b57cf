//! Keyword arguments as typed settings: each value is read from its Python object into a small
//! value tree ([`Arg`]: None, bool, int, float, str or path, list) and deserialized by serde into
//! the request's own settings type (`clip_app::request::RunSettings`). A value of the wrong type
//! (`True` as a number, `None` in a list of texts, a tuple as a size, a number as a path) is a
//! `TypeError`; a value of the right type that the setting refuses is a `ValueError` with the
//! setting's own message. No flags, no parsing of messages.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::{self, IntoDeserializer};
use serde::Deserialize;

/// A keyword argument's value.
#[derive(Debug, Clone)]
pub enum Arg {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Text(String),
    List(Vec<Arg>),
}

impl Arg {
    /// The value of a Python object: None, bool, int, float, str, os.PathLike, or a list or tuple
    /// of them.
    pub fn from_py(value: &Bound<'_, PyAny>) -> Result<Self, KwargError> {
        if value.is_none() {
            return Ok(Self::None);
        }
        if value.is_instance_of::<PyBool>() {
            return Ok(Self::Bool(
                value.extract().map_err(|e: PyErr| KwargError::Type(e.to_string()))?,
            ));
        }
        if value.is_instance_of::<PyInt>() {
            return value
                .extract::<i128>()
                .map(Self::Int)
                .map_err(|_| KwargError::Value(format!("{value} is too large")));
        }
        if value.is_instance_of::<PyFloat>() {
            return Ok(Self::Float(
                value.extract().map_err(|e: PyErr| KwargError::Type(e.to_string()))?,
            ));
        }
        if value.is_instance_of::<PyString>() {
            return Ok(Self::Text(
                value.extract().map_err(|e: PyErr| KwargError::Type(e.to_string()))?,
            ));
        }
        if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
            let items = value.try_iter().map_err(|e| KwargError::Type(e.to_string()))?;
            return items
                .map(|item| Self::from_py(&item.map_err(|e| KwargError::Type(e.to_string()))?))
                .collect::<Result<_, _>>()
                .map(Self::List);
        }
        // A path (pathlib.Path, anything with __fspath__ that gives a str).
        let fspath = value.py().import("os").and_then(|os| os.getattr("fspath"));
        if let Ok(text) = fspath.and_then(|f| f.call1((value,))).and_then(|p| p.extract::<String>())
        {
            return Ok(Self::Text(text));
        }
        let kind = value.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        Err(KwargError::Type(format!(
            "expected a number, text, path, bool, None or a list of them, not {kind}"
        )))
    }

    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Self::None => de::Unexpected::Other("None"),
            Self::Bool(b) => de::Unexpected::Bool(*b),
            Self::Int(i) => match i64::try_from(*i) {
                Ok(i) => de::Unexpected::Signed(i),
                Err(_) => de::Unexpected::Other("a large integer"),
            },
            Self::Float(f) => de::Unexpected::Float(*f),
            Self::Text(s) => de::Unexpected::Str(s),
            Self::List(_) => de::Unexpected::Seq,
        }
    }
}

/// What is wrong with a keyword argument: its type (`TypeError`) or its value (`ValueError`).
#[derive(Debug, Clone, PartialEq)]
pub enum KwargError {
    Type(String),
    Value(String),
}

impl std::fmt::Display for KwargError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Type(m) | Self::Value(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for KwargError {}

impl de::Error for KwargError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self::Value(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::Type(format!("expected {exp}, not {unexp}"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::Type(format!("unknown setting `{field}`; settings: {}", expected.join(", ")))
    }
}

impl<'de> de::Deserializer<'de> for Arg {
    type Error = KwargError;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, KwargError> {
        match self {
            Self::None => visitor.visit_none(),
            Self::Bool(b) => visitor.visit_bool(b),
            Self::Int(i) => match i64::try_from(i) {
                Ok(i) => visitor.visit_i64(i),
                Err(_) => match u64::try_from(i) {
                    Ok(u) => visitor.visit_u64(u),
                    Err(_) => Err(KwargError::Value(format!("{i} is too large"))),
                },
            },
            Self::Float(f) => visitor.visit_f64(f),
            Self::Text(s) => visitor.visit_string(s),
            Self::List(items) => {
                visitor.visit_seq(de::value::SeqDeserializer::new(items.into_iter()))
            }
        }
    }

    /// `None` is no value; anything else is the value.
    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, KwargError> {
        match self {
            Self::None => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    /// A list; one value stands for a list of one (`negative="static noise"`).
    fn deserialize_seq<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, KwargError> {
        match self {
            Self::List(items) => {
                visitor.visit_seq(de::value::SeqDeserializer::new(items.into_iter()))
            }
            Self::None => Err(de::Error::invalid_type(de::Unexpected::Other("None"), &visitor)),
            one => visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::once(one))),
        }
    }

    /// Text only (a parser's input): a number where text is expected is the wrong type.
    fn deserialize_str<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, KwargError> {
        match self {
            Self::Text(s) => visitor.visit_string(s),
            other => Err(de::Error::invalid_type(other.unexpected(), &visitor)),
        }
    }

    fn deserialize_string<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, KwargError> {
        self.deserialize_str(visitor)
    }

    /// A choice by its name (`device="cpu"`): text only.
    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, KwargError> {
        match self {
            Self::Text(s) => visitor.visit_enum(s.into_deserializer()),
            other => Err(de::Error::invalid_type(other.unexpected(), &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct newtype_struct tuple tuple_struct map struct identifier ignored_any
    }
}

impl IntoDeserializer<'_, KwargError> for Arg {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// The keyword arguments as `T`, each named in its error: `TypeError` for a wrong type or an
/// unknown keyword (with the nearest valid one), `ValueError` for a value the setting refuses.
pub fn settings<T: for<'de> Deserialize<'de>>(
    function: &str,
    known: &[String],
    kwargs: &[(String, Bound<'_, PyAny>)],
) -> PyResult<T> {
    let mut entries = Vec::new();
    for (key, value) in kwargs {
        // `None` is a keyword not given (the setting's default), as Python's defaults are.
        if value.is_none() {
            continue;
        }
        if !known.contains(key) {
            let nearest = known
                .iter()
                .map(|s| (strsim::damerau_levenshtein(key, s), s))
                .filter(|(d, _)| *d <= 3)
                .min()
                .map(|(_, s)| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(PyTypeError::new_err(format!(
                "{function}: unknown setting `{key}`{nearest}; settings: {}",
                known.join(", ")
            )));
        }
        let arg = Arg::from_py(value).map_err(|e| py_error(function, key, e))?;
        // Each alone first, so that an error names its keyword.
        let one = de::value::MapDeserializer::new(std::iter::once((key.clone(), arg.clone())));
        T::deserialize(one).map_err(|e| py_error(function, key, e))?;
        entries.push((key.clone(), arg));
    }
    T::deserialize(de::value::MapDeserializer::new(entries.into_iter()))
        .map_err(|e| py_error(function, "settings", e))
}

fn py_error(function: &str, key: &str, err: KwargError) -> PyErr {
    match err {
        KwargError::Type(m) => PyTypeError::new_err(format!("{function}: {key}: {m}")),
        KwargError::Value(m) => PyValueError::new_err(format!("{function}: {key}: {m}")),
    }
}

/// The keyword arguments of a call, in order.
pub fn pairs<'py>(
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
    let Some(kwargs) = kwargs else { return Ok(Vec::new()) };
    kwargs.iter().map(|(k, v)| Ok((k.extract::<String>()?, v))).collect()
}
