//! Word-like text for compression tests: a vocabulary of 300 random words, picked with a skew.
//! Unlike random bytes it gives deflate long matches across block boundaries, which is where a
//! reused compressor state once left traces in later blocks.

/// `len` bytes of word-like text, the same for the same `seed`.
pub fn word_text(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let vocab: Vec<Vec<u8>> = (0..300)
        .map(|_| {
            let n = 2 + next() % 9;
            (0..n).map(|_| b'a' + (next() % 26) as u8).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = next();
        out.extend_from_slice(&vocab[(r % 300) * (r / 300 % 300) / 300]);
        out.push(if r % 11 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}
