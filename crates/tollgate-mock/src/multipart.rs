//! A small `multipart/form-data` reader for the upload endpoints (files, images, audio).
//!
//! The mock only needs each part's name, file name, content type and bytes, so this reads the
//! whole (already bounded) body at once instead of streaming it.

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: &'a [u8],
}

/// A parsed form, parts in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Form<'a> {
    pub parts: Vec<Part<'a>>,
}

impl<'a> Form<'a> {
    /// Parses `body` given the request's `content-type`; the message says what is wrong.
    pub fn parse(content_type: Option<&str>, body: &'a [u8]) -> Result<Self, String> {
        let content_type = content_type.unwrap_or("");
        if !content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
        {
            return Err(format!(
                "Invalid Content-Type header ({content_type}), expected multipart/form-data."
            ));
        }
        let boundary = param(content_type, "boundary")
            .ok_or("multipart/form-data without a boundary parameter")?;
        let delimiter = format!("--{boundary}");
        let mut parts = Vec::new();
        let mut at = find(body, delimiter.as_bytes(), 0).ok_or("multipart body without parts")?
            + delimiter.len();
        loop {
            if body[at..].starts_with(b"--") {
                break;
            }
            at += skip_line_end(&body[at..]);
            let headers_end =
                find(body, b"\r\n\r\n", at).ok_or("multipart part without headers")?;
            let headers = String::from_utf8_lossy(&body[at..headers_end]);
            let data_start = headers_end + 4;
            let closing = format!("\r\n{delimiter}");
            let data_end = find(body, closing.as_bytes(), data_start)
                .ok_or("multipart body not closed by its boundary")?;
            parts.push(part(&headers, &body[data_start..data_end])?);
            at = data_end + closing.len();
        }
        Ok(Self { parts })
    }

    /// The first part called `name`.
    pub fn get(&self, name: &str) -> Option<&Part<'a>> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// The first part called `name`, as text.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|p| String::from_utf8_lossy(p.data).into_owned())
    }

    /// Every part called one of `names` (`image` and `image[]` both carry edit inputs).
    pub fn all<'s>(&'s self, names: &'s [&str]) -> impl Iterator<Item = &'s Part<'a>> {
        self.parts
            .iter()
            .filter(move |p| names.contains(&p.name.as_str()))
    }
}

fn part<'a>(headers: &str, data: &'a [u8]) -> Result<Part<'a>, String> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in headers.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "content-disposition" => {
                name = param(value, "name");
                filename = param(value, "filename");
            }
            "content-type" => content_type = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let name = name.ok_or("multipart part without a name")?;
    Ok(Part {
        name,
        filename,
        content_type,
        data,
    })
}

/// `key=value` or `key="value"` among `;`-separated parameters.
fn param(header: &str, key: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn skip_line_end(rest: &[u8]) -> usize {
    if rest.starts_with(b"\r\n") {
        2
    } else if rest.starts_with(b"\n") {
        1
    } else {
        0
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_keep_names_file_names_and_exact_bytes() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"a\":1}\r\n\r\n--XX--\r\n";
        let form = Form::parse(Some("multipart/form-data; boundary=XX"), body).unwrap();
        assert_eq!(form.text("purpose").as_deref(), Some("batch"));
        let file = form.get("file").unwrap();
        assert_eq!(file.filename.as_deref(), Some("in.jsonl"));
        assert_eq!(file.data, b"{\"a\":1}\r\n");
        assert!(Form::parse(Some("application/json"), body).is_err());
    }
}
