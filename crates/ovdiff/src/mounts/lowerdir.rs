//! The overlay path grammar, byte for byte as fs/overlayfs/params.c reads it.
//!
//! `lowerdir=` is a `:`-separated list, topmost layer first; a `\` makes the next character
//! literal (so `\:` is a colon inside a path); `::` starts the data-only layers, which must all
//! come last, each after its own `::` (`ovl_parse_param_split_lowerdirs`,
//! `ovl_parse_param_lowerdir`). `upperdir=` and `workdir=` values are unescaped the same way
//! (`ovl_unescape`); `lowerdir+=` and `datadir+=` values are taken literally.

/// The layers named by one `lowerdir=` value.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Layers {
    /// Regular lower layers, topmost first.
    pub regular: Vec<String>,
    /// Data-only layers, in the order given.
    pub data_only: Vec<String>,
}

/// Splits a `lowerdir=` value into its layers. An empty value names no layer (the kernel
/// accepts it as "reset the list").
///
/// # Errors
/// The reason the kernel would refuse the value.
pub(crate) fn split(value: &str) -> Result<Layers, &'static str> {
    let mut layers = Layers::default();
    if value.is_empty() {
        return Ok(layers);
    }
    if value.starts_with(':') {
        return Err("a layer path is empty (the value starts with ':')");
    }
    let mut current = String::new();
    // Whether the layer being read was introduced by `::`.
    let mut current_is_data = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                // A trailing lone backslash escapes the terminating NUL: the kernel drops it.
                if let Some(escaped) = chars.next() {
                    current.push(escaped);
                }
            }
            ':' => {
                let double = chars.peek() == Some(&':');
                if double {
                    chars.next();
                    if chars.peek() == Some(&':') {
                        return Err("only ':' or '::' may separate layers, not ':::'");
                    }
                }
                if chars.peek().is_none() {
                    return Err("the value ends with an unescaped ':'");
                }
                push_layer(&mut layers, std::mem::take(&mut current), current_is_data)?;
                current_is_data = double;
            }
            other => current.push(other),
        }
    }
    push_layer(&mut layers, current, current_is_data)?;
    Ok(layers)
}

fn push_layer(layers: &mut Layers, path: String, data: bool) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("a layer path is empty");
    }
    if data {
        layers.data_only.push(path);
    } else if !layers.data_only.is_empty() {
        return Err("a regular layer follows a data-only layer (':' after '::')");
    } else {
        layers.regular.push(path);
    }
    Ok(())
}

/// `ovl_unescape`: drops each `\` and keeps the character after it literally.
pub(crate) fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Escapes a path for a `lowerdir=` list: `\`, `:` and `,` get a `\` (the comma so the option
/// survives being joined into a mount(2) data string).
pub(crate) fn escape_layer(path: &str) -> String {
    escape(path, &['\\', ':', ','])
}

/// Escapes a path for `upperdir=` / `workdir=`: `\` and `,`.
pub(crate) fn escape_dir(path: &str) -> String {
    escape(path, &['\\', ','])
}

fn escape(path: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Joins layers back into a `lowerdir=` value that [`split`] reads as the same layers.
pub(crate) fn join(regular: &[&str], data_only: &[&str]) -> String {
    let mut out = String::new();
    for (i, layer) in regular.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&escape_layer(layer));
    }
    for layer in data_only {
        out.push_str("::");
        out.push_str(&escape_layer(layer));
    }
    out
}

/// Splits a mount(2) data string on the commas that are not escaped with `\`, keeping the
/// escapes for the per-option parsers (`ovl_next_opt`).
pub(crate) fn split_data(data: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = data.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ',' => out.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    out.push(current);
    out.retain(|o| !o.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(regular: &[&str], data_only: &[&str]) -> Layers {
        Layers {
            regular: regular.iter().map(|s| s.to_string()).collect(),
            data_only: data_only.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn colon_separates_layers_topmost_first() {
        assert_eq!(
            split("/l1:/l2:/l3"),
            Ok(layers(&["/l1", "/l2", "/l3"], &[]))
        );
    }

    #[test]
    fn escaped_colon_stays_in_the_path() {
        assert_eq!(split(r"/a\:b:/c"), Ok(layers(&["/a:b", "/c"], &[])));
        assert_eq!(split(r"/back\\:/c"), Ok(layers(&[r"/back\", "/c"], &[])));
    }

    #[test]
    fn double_colon_starts_data_only_layers() {
        assert_eq!(
            split("/l1:/l2::/do1::/do2"),
            Ok(layers(&["/l1", "/l2"], &["/do1", "/do2"]))
        );
    }

    #[test]
    fn malformed_lists_are_refused_like_the_kernel_does() {
        assert!(split(":/a").is_err(), "leading colon");
        assert!(split("/a:").is_err(), "trailing colon");
        assert!(split("/a::").is_err(), "trailing double colon");
        assert!(split("/a:::/b").is_err(), "triple colon");
        assert!(split("/a::/d:/b").is_err(), "regular after data-only");
        assert!(split(r"/a:\").is_err(), "a layer that unescapes to nothing");
    }

    #[test]
    fn join_inverts_split() {
        for value in ["/x", r"/a\:b:/c\\d", "/l1::/d1::/d2", r"/comma\,here"] {
            let l = split(value).expect("valid");
            let regular: Vec<&str> = l.regular.iter().map(String::as_str).collect();
            let data: Vec<&str> = l.data_only.iter().map(String::as_str).collect();
            assert_eq!(split(&join(&regular, &data)), Ok(l));
        }
    }

    #[test]
    fn data_string_splits_on_unescaped_commas_only() {
        assert_eq!(
            split_data(r"lowerdir=/a\,b:/c,upperdir=/u,ro"),
            vec![r"lowerdir=/a\,b:/c", "upperdir=/u", "ro"]
        );
    }
}
