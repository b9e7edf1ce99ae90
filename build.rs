//! Minify the admin API's OpenAPI document for the worker (whitespace between tokens only; the
//! source `src/admin/openapi.json` stays readable). Every byte in the wasm counts.

use std::{env, fs, path::Path};

fn main() {
    let src = "src/admin/openapi.json";
    println!("cargo:rerun-if-changed={src}");
    let text = fs::read_to_string(src).expect("src/admin/openapi.json is readable");
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    let dir = env::var("OUT_DIR").expect("OUT_DIR is set by cargo");
    fs::write(Path::new(&dir).join("openapi.min.json"), out).expect("OUT_DIR is writable");
}
