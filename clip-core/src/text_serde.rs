//! Serde for the settings' small types as the text the command line takes (`"fft-decorrelated"`,
//! `"best"`, `"448x448"`, `"affine:10,0.1,0.9,1.1"`, `"fp16"`): a request or a record holds
//! them as that text, and reading one back runs the same parser as the flag (so a value a flag
//! refuses is refused in a file too, with the same message).

/// `Serialize` through `Display`, `Deserialize` through `FromStr` (its error as the message).
macro_rules! as_text {
    ($($ty:ty => $expecting:literal),* $(,)?) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Text;
                impl serde::de::Visitor<'_> for Text {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(Text)
            }
        }
    )*};
}

use crate::clip::model::Precision;
use crate::engine::augment::Augment;
use crate::engine::optimize::{Keep, Preset};
use crate::engine::param::{Canvas, Param};

as_text! {
    Param => "a parameterisation's name (pixels, fft, decorrelated, fft-decorrelated)",
    Keep => "a keep rule (best, last)",
    Preset => "a preset's name (constrained, unconstrained)",
    Augment => "an augmentation spec such as \"affine:10,0.1,0.9,1.1\"",
    Precision => "a precision (fp16, fp32)",
}

/// A canvas: `"WxH"` or `"N"` as text, or N as a whole number (a square).
impl serde::Serialize for Canvas {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Canvas {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Size;
        impl serde::de::Visitor<'_> for Size {
            type Value = Canvas;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an image size: N (a whole number) or \"WxH\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Canvas, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Canvas, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Canvas, E> {
                v.to_string().parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Size)
    }
}
