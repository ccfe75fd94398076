//! `per_image`: the price of one image by size and quality (dall-e-2, dall-e-3).

use toml::Value;

use super::{Problems, usd};
use crate::pricing::ImagePrice;

const PER_IMAGE_FIELDS: &[&str] = &["size", "quality", "usd"];
const PER_IMAGE: &str = "USD per image";

/// `per_image = [ { size = "1024x1024", quality = "hd", usd = "0.08" }, … ]`; `None` after
/// reporting what is wrong.
pub(super) fn per_image(value: &Value, path: &str, p: &mut Problems) -> Option<Vec<ImagePrice>> {
    let shape = "must be an array of tables like [ { size = \"1024x1024\", quality = \"standard\", \
                 usd = \"0.04\" } ]";
    let items = match value {
        Value::Array(items) if !items.is_empty() => items,
        Value::Array(_) => {
            p.push(
                path,
                "lists no image price; omit per_image for a model not billed per image",
            );
            return None;
        }
        _ => {
            p.push(path, shape);
            return None;
        }
    };
    let mut out: Vec<ImagePrice> = Vec::new();
    let mut ok = true;
    for (j, item) in items.iter().enumerate() {
        let field = format!("{path}[{j}]");
        let Value::Table(t) = item else {
            p.push(field, shape);
            ok = false;
            continue;
        };
        p.unknown_fields(t, &field, PER_IMAGE_FIELDS);
        let text = |key: &str, p: &mut Problems| match t.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(_) => {
                p.push(format!("{field}.{key}"), "must be a non-empty string");
                None
            }
            None => None,
        };
        let size = text("size", p);
        if !t.contains_key("size") {
            p.push(format!("{field}.size"), "missing (e.g. \"1024x1024\")");
        }
        // A model without qualities (dall-e-2) has one, which requests call "standard".
        let quality = match t.get("quality") {
            None => Some("standard".to_string()),
            Some(_) => text("quality", p),
        };
        let nanos = match t.get("usd") {
            Some(v) => usd(v, &format!("{field}.usd"), PER_IMAGE, p),
            None => {
                p.push(
                    format!("{field}.usd"),
                    "missing (USD per image, e.g. \"0.04\")",
                );
                None
            }
        };
        let (Some(size), Some(quality), Some(nanos)) = (size, quality, nanos) else {
            ok = false;
            continue;
        };
        if out.iter().any(|i| i.size == size && i.quality == quality) {
            p.push(
                field,
                format!("size '{size}' at quality '{quality}' is listed twice"),
            );
            ok = false;
            continue;
        }
        out.push(ImagePrice {
            size,
            quality,
            nanos,
        });
    }
    ok.then_some(out)
}
