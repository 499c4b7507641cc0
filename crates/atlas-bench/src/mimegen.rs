//! Synthetic message-sized items for the repository scenario (this replaces the former
//! `bench_repo` example of `atlas-core`): compressible text and HTML with, for about a
//! third, an incompressible attachment, so compression and dedup ratios are realistic.

use std::fmt::Write as _;

const WORDS: &[&str] = &[
    "quarterly",
    "report",
    "meeting",
    "the",
    "and",
    "budget",
    "review",
    "project",
    "customer",
    "please",
    "attached",
    "thanks",
    "regards",
    "schedule",
    "update",
    "invoice",
    "deadline",
    "team",
    "proposal",
    "contract",
    "for",
    "with",
    "next",
    "week",
    "Monday",
    "agenda",
    "numbers",
    "forecast",
    "delivery",
    "status",
    "issue",
    "resolved",
    "follow",
    "up",
    "call",
    "tomorrow",
    "office",
    "travel",
    "approval",
    "draft",
];

/// xorshift64*: fast, seedable, good enough for synthetic data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*: fast and good enough for synthetic data.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Plain base64 with CRLF every 76 characters, as mail attachments are encoded.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for (i, c) in data.chunks(3).enumerate() {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for j in 0..4 {
            let ch = if j <= c.len() {
                ALPHABET[(n >> (18 - 6 * j) & 63) as usize] as char
            } else {
                '='
            };
            out.push(ch);
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

/// A 20–200 KiB multipart message: text and HTML parts of varied words (compressible like
/// real mail) and, for about a third, a base64 attachment of random bytes.
pub fn message(rng: &mut Rng, n: usize) -> Vec<u8> {
    let target = 20 * 1024 + rng.below(180 * 1024) as usize;
    let mut m = String::with_capacity(target + 1024);
    let _ = write!(
        m,
        "Message-ID: <{n}.{}@contoso.com>\r\nFrom: User {} <user{}@contoso.com>\r\nTo: team@contoso.com\r\nSubject: {} {} {}\r\nDate: Mon, 2 Mar 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        rng.next(),
        rng.below(50),
        rng.below(50),
        WORDS[rng.below(40) as usize],
        WORDS[rng.below(40) as usize],
        n
    );
    let with_attachment = rng.below(3) == 0;
    let text_target = if with_attachment {
        target / 4
    } else {
        target / 2
    };
    let mut line = 0;
    while m.len() < text_target {
        m.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        m.push(' ');
        line += 1;
        if line % 12 == 0 {
            m.push_str("\r\n");
        }
    }
    m.push_str("\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>");
    let html_target = if with_attachment { target / 2 } else { target };
    while m.len() < html_target {
        let _ = write!(
            m,
            "<p>{} <b>{}</b> {}</p>\r\n",
            WORDS[rng.below(40) as usize],
            WORDS[rng.below(40) as usize],
            WORDS[rng.below(40) as usize]
        );
    }
    m.push_str("</body></html>\r\n");
    if with_attachment {
        m.push_str("--b1\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        let raw_len = (target.saturating_sub(m.len())) * 3 / 4;
        let raw: Vec<u8> = (0..raw_len).map(|_| rng.next() as u8).collect();
        m.push_str(&base64(&raw));
        m.push_str("\r\n");
    }
    m.push_str("--b1--\r\n");
    m.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sized_and_deterministic() {
        let a = message(&mut Rng(1), 0);
        let b = message(&mut Rng(1), 0);
        assert_eq!(a, b);
        assert!(a.len() >= 20 * 1024 && a.len() < 220 * 1024, "{}", a.len());
        assert!(a.starts_with(b"Message-ID: <0."));
        assert!(a.ends_with(b"--b1--\r\n"));
    }
}
