//! Per-request templating of URLs and bodies: `{{counter}}` and `{{uuid}}`, parsed once, rendered
//! into a reused buffer.

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Literal(Vec<u8>),
    Counter,
    Uuid,
}

/// Text that is either fixed (shared, never copied) or has placeholders filled per request.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Fixed(Vec<u8>),
    Parts(Vec<Part>),
}

/// The values one request fills its placeholders with (the same in URL and body).
#[derive(Debug, Clone, Copy)]
pub struct Fill {
    pub counter: u64,
    pub uuid: u128,
}

impl Template {
    pub fn parse(text: &str) -> anyhow::Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let Some(len) = rest[open..].find("}}") else {
                anyhow::bail!("unclosed `{{{{` in template {text:?}");
            };
            if open > 0 {
                parts.push(Part::Literal(rest.as_bytes()[..open].to_vec()));
            }
            let name = rest[open + 2..open + len].trim();
            parts.push(match name {
                "counter" => Part::Counter,
                "uuid" => Part::Uuid,
                other => anyhow::bail!(
                    "unknown placeholder `{{{{{other}}}}}` in {text:?}; known: {{{{counter}}}}, {{{{uuid}}}}"
                ),
            });
            rest = &rest[open + len + 2..];
        }
        if parts.is_empty() {
            return Ok(Template::Fixed(text.as_bytes().to_vec()));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.as_bytes().to_vec()));
        }
        Ok(Template::Parts(parts))
    }

    pub fn is_fixed(&self) -> bool {
        matches!(self, Template::Fixed(_))
    }

    pub fn uses_counter(&self) -> bool {
        matches!(self, Template::Parts(p) if p.contains(&Part::Counter))
    }

    /// Appends the text with `fill`'s values to `out`.
    pub fn render_into(&self, fill: Fill, out: &mut Vec<u8>) {
        let parts = match self {
            Template::Fixed(b) => return out.extend_from_slice(b),
            Template::Parts(parts) => parts,
        };
        for part in parts {
            match part {
                Part::Literal(b) => out.extend_from_slice(b),
                Part::Counter => push_decimal(out, fill.counter),
                Part::Uuid => out.extend_from_slice(&uuid_v4(fill.uuid)),
            }
        }
    }

    /// The length `render_into` appends.
    pub fn rendered_len(&self, fill: Fill) -> usize {
        let parts = match self {
            Template::Fixed(b) => return b.len(),
            Template::Parts(parts) => parts,
        };
        parts
            .iter()
            .map(|part| match part {
                Part::Literal(b) => b.len(),
                Part::Counter => fill.counter.checked_ilog10().unwrap_or(0) as usize + 1,
                Part::Uuid => 36,
            })
            .sum()
    }
}

/// Appends the decimal digits of `n` without going through `format!`.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
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
    out.extend_from_slice(&digits[i..]);
}

/// A random (version 4, RFC 4122 variant) UUID in its 36-character text form.
pub fn uuid_v4(random: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v = (random & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let mut out = [b'-'; 36];
    let mut nibble = 32;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        nibble -= 1;
        *slot = HEX[((v >> (nibble * 4)) & 0xF) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &Template, fill: Fill) -> String {
        let mut out = b"kept:".to_vec();
        t.render_into(fill, &mut out);
        assert_eq!(out.len(), 5 + t.rendered_len(fill));
        String::from_utf8(out).unwrap().split_off(5)
    }

    #[test]
    fn lengths_of_counters() {
        let t = Template::parse("{{counter}}").unwrap();
        for n in [0, 9, 10, 99, 100, u64::MAX] {
            assert_eq!(t.rendered_len(Fill { counter: n, uuid: 0 }), n.to_string().len());
        }
    }

    #[test]
    fn fixed_text_is_shared() {
        let t = Template::parse("/plain").unwrap();
        assert!(t.is_fixed());
        assert_eq!(render(&t, Fill { counter: 1, uuid: 2 }), "/plain");
    }

    #[test]
    fn placeholders_are_filled() {
        let t = Template::parse("/items/{{counter}}?id={{ uuid }}").unwrap();
        assert!(t.uses_counter());
        let out = render(&t, Fill { counter: 42, uuid: u128::MAX });
        assert_eq!(out, "/items/42?id=ffffffff-ffff-4fff-bfff-ffffffffffff");
        let zero = render(&t, Fill { counter: 0, uuid: 0 });
        assert_eq!(zero, "/items/0?id=00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_rejected() {
        let err = Template::parse("/{{nope}}").unwrap_err().to_string();
        assert!(err.contains("unknown placeholder `{{nope}}`"), "{err}");
        let err = Template::parse("/{{counter").unwrap_err().to_string();
        assert!(err.contains("unclosed"), "{err}");
    }
}
