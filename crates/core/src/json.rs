//! Hand-written JSON codecs: a small writer, and a reader of one parsed [`serde_json::Value`].
//!
//! serde's derived (de)serialisers cost the worker several kilobytes of wasm per type (one
//! visitor per struct, an instance of every generic path, float formatting reached through
//! type-mismatch errors). These two helpers are compiled once and shared by every codec: the
//! writer escapes strings and writes numbers with the serde_json writer that is in the binary
//! already; the reader turns each missing or mistyped field into a [`DecodeError`] naming it.

use serde_json::{Map, Value};
use std::fmt;

/// Writes compact JSON. Commas are placed automatically: a value or key that does not follow
/// `{`, `[` or `:` is preceded by one.
///
/// ```
/// # use switchyard_core::json::JsonWriter;
/// let mut w = JsonWriter::new();
/// w.open().key("a").u64(1).key("b").open_list().str("x").null().close_list().close();
/// assert_eq!(w.finish(), r#"{"a":1,"b":["x",null]}"#);
/// ```
#[derive(Debug, Default)]
pub struct JsonWriter {
    out: Vec<u8>,
}

impl JsonWriter {
    pub fn new() -> Self {
        JsonWriter {
            out: Vec::with_capacity(256),
        }
    }

    fn sep(&mut self) {
        if let Some(&b) = self.out.last() {
            if b != b'{' && b != b'[' && b != b':' {
                self.out.push(b',');
            }
        }
    }

    /// `"k":` (the value follows).
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.str(k);
        self.out.push(b':');
        self
    }

    pub fn open(&mut self) -> &mut Self {
        self.sep();
        self.out.push(b'{');
        self
    }

    pub fn close(&mut self) -> &mut Self {
        self.out.push(b'}');
        self
    }

    pub fn open_list(&mut self) -> &mut Self {
        self.sep();
        self.out.push(b'[');
        self
    }

    pub fn close_list(&mut self) -> &mut Self {
        self.out.push(b']');
        self
    }

    /// A string, escaped as serde_json escapes it.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.sep();
        // The same instance of serde_json's writer the cache's stream code uses.
        let _ = serde_json::to_writer(&mut self.out, s);
        self
    }

    pub fn u64(&mut self, mut n: u64) -> &mut Self {
        self.sep();
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[i..]);
        self
    }

    /// A float as serde_json writes it (`0.8`, `1.0`); `null` when not finite.
    pub fn f64(&mut self, f: f64) -> &mut Self {
        self.sep();
        let _ = serde_json::to_writer(&mut self.out, &Value::from(f));
        self
    }

    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.sep();
        self.out
            .extend_from_slice(if b { b"true" as &[u8] } else { b"false" });
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.sep();
        self.out.extend_from_slice(b"null");
        self
    }

    /// JSON text written elsewhere (it must be one complete value).
    pub fn raw(&mut self, json: &str) -> &mut Self {
        self.sep();
        self.out.extend_from_slice(json.as_bytes());
        self
    }

    /// `"k":n` only when there is a value (what `skip_serializing_if = "Option::is_none"` did).
    pub fn opt_u64(&mut self, k: &str, v: Option<u64>) -> &mut Self {
        if let Some(v) = v {
            self.key(k).u64(v);
        }
        self
    }

    /// `"k":"s"` only when there is a value.
    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        if let Some(v) = v {
            self.key(k).str(v);
        }
        self
    }

    /// `"k":[…strings]` only when there is a list.
    pub fn opt_strs(&mut self, k: &str, v: Option<&[String]>) -> &mut Self {
        if let Some(v) = v {
            self.key(k).open_list();
            for s in v {
                self.str(s);
            }
            self.close_list();
        }
        self
    }

    pub fn finish(self) -> String {
        // Only whole UTF-8 strings and ASCII are ever written.
        String::from_utf8(self.out).unwrap_or_default()
    }
}

/// `v.pointer(path)` for the crate's literal paths (`/choices/0/delta`, no `~` escapes).
/// serde_json's `pointer` unescapes every token with `str::replace`, which the worker needs
/// nowhere else.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for token in path.strip_prefix('/')?.split('/') {
        cur = match cur {
            Value::Object(m) => m.get(token)?,
            Value::Array(a) => a.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Why a JSON document could not be read (the field is the innermost key at fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON at all.
    NotJson,
    /// A required field is absent (or `null`).
    Missing(&'static str),
    /// A field (or the document, by its name) has the wrong type or an unknown value.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotJson => f.write_str("not JSON"),
            DecodeError::Missing(k) => write!(f, "missing field `{k}`"),
            DecodeError::Invalid(k) => write!(f, "invalid field `{k}`"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Parse JSON text into a value (serde_json's `Value` reader, which the worker has anyway).
pub fn parse(text: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(text).map_err(|_| DecodeError::NotJson)
}

/// The fields of one JSON object. `null` reads as absent everywhere (as serde's `Option` did).
#[derive(Debug, Clone, Copy)]
pub struct Obj<'a>(pub &'a Map<String, Value>);

impl<'a> Obj<'a> {
    /// `v` as an object; `what` names it in the error.
    pub fn new(v: &'a Value, what: &'static str) -> Result<Self, DecodeError> {
        v.as_object().map(Obj).ok_or(DecodeError::Invalid(what))
    }

    pub fn opt(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    pub fn req(&self, k: &'static str) -> Result<&'a Value, DecodeError> {
        self.opt(k).ok_or(DecodeError::Missing(k))
    }

    pub fn u64(&self, k: &'static str) -> Result<u64, DecodeError> {
        self.req(k)?.as_u64().ok_or(DecodeError::Invalid(k))
    }

    pub fn u32(&self, k: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.u64(k)?).map_err(|_| DecodeError::Invalid(k))
    }

    pub fn opt_u64(&self, k: &'static str) -> Result<Option<u64>, DecodeError> {
        match self.opt(k) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(DecodeError::Invalid(k)),
        }
    }

    /// An integer that defaults to 0 when absent.
    pub fn u64_or_0(&self, k: &'static str) -> Result<u64, DecodeError> {
        Ok(self.opt_u64(k)?.unwrap_or(0))
    }

    pub fn f64(&self, k: &'static str) -> Result<f64, DecodeError> {
        self.req(k)?.as_f64().ok_or(DecodeError::Invalid(k))
    }

    pub fn bool(&self, k: &'static str) -> Result<bool, DecodeError> {
        self.req(k)?.as_bool().ok_or(DecodeError::Invalid(k))
    }

    /// A flag that defaults to false when absent.
    pub fn bool_or_false(&self, k: &'static str) -> Result<bool, DecodeError> {
        match self.opt(k) {
            None => Ok(false),
            Some(v) => v.as_bool().ok_or(DecodeError::Invalid(k)),
        }
    }

    pub fn str(&self, k: &'static str) -> Result<&'a str, DecodeError> {
        self.req(k)?.as_str().ok_or(DecodeError::Invalid(k))
    }

    pub fn opt_str(&self, k: &'static str) -> Result<Option<&'a str>, DecodeError> {
        match self.opt(k) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or(DecodeError::Invalid(k)),
        }
    }

    /// An owned optional string.
    pub fn opt_string(&self, k: &'static str) -> Result<Option<String>, DecodeError> {
        Ok(self.opt_str(k)?.map(str::to_string))
    }

    pub fn obj(&self, k: &'static str) -> Result<Obj<'a>, DecodeError> {
        Obj::new(self.req(k)?, k)
    }

    /// An object that may be absent.
    pub fn opt_obj(&self, k: &'static str) -> Result<Option<Obj<'a>>, DecodeError> {
        self.opt(k).map(|v| Obj::new(v, k)).transpose()
    }

    /// A list that may be absent (then empty).
    pub fn list(&self, k: &'static str) -> Result<&'a [Value], DecodeError> {
        match self.opt(k) {
            None => Ok(&[]),
            Some(v) => v
                .as_array()
                .map(Vec::as_slice)
                .ok_or(DecodeError::Invalid(k)),
        }
    }

    /// A list of strings that may be absent.
    pub fn opt_strs(&self, k: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        match self.opt(k) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .map(Some)
                .ok_or(DecodeError::Invalid(k)),
        }
    }
}

/// JSON bytes, always through serde_json's `&mut Vec<u8>` writer: one instance of its
/// serialiser in the worker instead of one per writer type (wasm size).
pub fn to_bytes<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = serde_json::to_writer(&mut out, v);
    out
}

/// JSON text, through the same writer as [`to_bytes`]; never `Value`'s `Display` (which links
/// two more copies of the serialiser, compact and pretty).
pub fn to_text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    String::from_utf8(to_bytes(v)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_walks_objects_and_arrays_like_pointer() {
        let v = serde_json::json!({"a": {"b": [10, {"c": "x"}]}, "": 1});
        for path in [
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/2",
            "/a/x",
            "/a/b/c",
            "/a/b/1/c/d",
            "/",
        ] {
            assert_eq!(super::at(&v, path), v.pointer(path), "{path}");
        }
        assert_eq!(super::at(&v, "a"), None);
    }

    use super::*;

    #[test]
    fn writer_places_commas_and_escapes_like_serde_json() {
        let mut w = JsonWriter::new();
        w.open()
            .key("s")
            .str("a\"b\\c\n\u{1}é")
            .key("n")
            .u64(0)
            .key("max")
            .u64(u64::MAX)
            .key("f")
            .f64(0.8)
            .key("one")
            .f64(1.0)
            .key("nan")
            .f64(f64::NAN)
            .key("b")
            .bool(true)
            .opt_u64("none", None)
            .opt_u64("some", Some(7))
            .opt_str("no", None)
            .opt_strs("l", Some(&["x".to_string(), "y".to_string()]))
            .key("e")
            .open_list()
            .close_list()
            .key("o")
            .open()
            .close()
            .key("nested")
            .open_list()
            .open()
            .key("a")
            .bool(false)
            .close()
            .open()
            .close()
            .raw("[1]")
            .close_list()
            .close();
        let text = w.finish();
        assert_eq!(
            text,
            r#"{"s":"a\"b\\c\n\u0001é","n":0,"max":18446744073709551615,"f":0.8,"one":1.0,"nan":null,"b":true,"some":7,"l":["x","y"],"e":[],"o":{},"nested":[{"a":false},{},[1]]}"#
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["s"], "a\"b\\c\n\u{1}é");
    }

    #[test]
    fn reader_names_missing_and_mistyped_fields() {
        let v = parse(
            br#"{"n":5,"neg":-1,"fl":1.5,"big":4294967296,"s":"x","b":true,"nul":null,
                "o":{"k":1},"l":[1],"sl":["a","b"],"bad":["a",1]}"#,
        )
        .unwrap();
        let o = Obj::new(&v, "doc").unwrap();
        assert_eq!(o.u64("n"), Ok(5));
        assert_eq!(o.u64("neg"), Err(DecodeError::Invalid("neg")));
        assert_eq!(o.u64("fl"), Err(DecodeError::Invalid("fl")));
        assert_eq!(o.u64("s"), Err(DecodeError::Invalid("s")));
        assert_eq!(o.u64("gone"), Err(DecodeError::Missing("gone")));
        assert_eq!(o.u64("nul"), Err(DecodeError::Missing("nul")));
        assert_eq!(o.u32("big"), Err(DecodeError::Invalid("big")));
        assert_eq!(o.opt_u64("nul"), Ok(None));
        assert_eq!(o.opt_u64("s"), Err(DecodeError::Invalid("s")));
        assert_eq!(o.u64_or_0("gone"), Ok(0));
        assert_eq!(o.f64("fl"), Ok(1.5));
        assert_eq!(o.f64("n"), Ok(5.0));
        assert_eq!(o.f64("s"), Err(DecodeError::Invalid("s")));
        assert_eq!(o.bool("b"), Ok(true));
        assert_eq!(o.bool("n"), Err(DecodeError::Invalid("n")));
        assert_eq!(o.bool_or_false("gone"), Ok(false));
        assert_eq!(o.str("s"), Ok("x"));
        assert_eq!(o.str("n"), Err(DecodeError::Invalid("n")));
        assert_eq!(o.opt_str("gone"), Ok(None));
        assert_eq!(o.opt_string("s"), Ok(Some("x".into())));
        assert_eq!(o.obj("o").unwrap().u64("k"), Ok(1));
        assert_eq!(o.obj("l").unwrap_err(), DecodeError::Invalid("l"));
        assert!(o.opt_obj("gone").unwrap().is_none());
        assert_eq!(o.list("l").unwrap().len(), 1);
        assert!(o.list("gone").unwrap().is_empty());
        assert_eq!(o.list("o").unwrap_err(), DecodeError::Invalid("o"));
        assert_eq!(
            o.opt_strs("sl"),
            Ok(Some(vec!["a".to_string(), "b".to_string()]))
        );
        assert_eq!(o.opt_strs("bad"), Err(DecodeError::Invalid("bad")));
        assert_eq!(o.opt_strs("nul"), Ok(None));
        assert_eq!(
            Obj::new(&Value::from(1), "doc").unwrap_err(),
            DecodeError::Invalid("doc")
        );
        assert_eq!(parse(b"{").unwrap_err(), DecodeError::NotJson);
        assert_eq!(
            DecodeError::Missing("x").to_string(),
            "missing field `x`".to_string()
        );
    }
}
