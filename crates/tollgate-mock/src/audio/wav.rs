//! Just enough WAV: writing a silent 16-bit PCM file, and reading an upload's duration.

/// The format of every WAV / PCM answer: 24 kHz, mono, 16-bit little-endian, as OpenAI's `pcm`.
pub(crate) const SAMPLE_RATE: u32 = 24_000;
const BYTES_PER_SAMPLE: u32 = 2;

/// Raw silent samples for `duration_ms`.
pub(crate) fn pcm(duration_ms: u64) -> Vec<u8> {
    let samples = duration_ms * u64::from(SAMPLE_RATE) / 1000;
    vec![0; (samples * u64::from(BYTES_PER_SAMPLE)) as usize]
}

/// A complete WAV file (44-byte header, then [`pcm`]).
pub(crate) fn wav(duration_ms: u64) -> Vec<u8> {
    let data = pcm(duration_ms);
    let data_len = data.len() as u32;
    let byte_rate = SAMPLE_RATE * BYTES_PER_SAMPLE;
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&(BYTES_PER_SAMPLE as u16).to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// A WAV file's duration in whole milliseconds (rounded down): `data` bytes / byte rate.
/// `None` when the file is not a WAV with a `fmt ` chunk before its `data` chunk.
pub(crate) fn duration_ms(file: &[u8]) -> Option<u64> {
    if file.get(0..4)? != b"RIFF" || file.get(8..12)? != b"WAVE" {
        return None;
    }
    let le32 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(file.get(at..at + 4)?.try_into().ok()?))
    };
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= file.len() {
        let id = file.get(at..at + 4)?;
        let size = le32(at + 4)?;
        match id {
            b"fmt " => byte_rate = Some(le32(at + 16)?),
            b"data" => {
                let rate = u64::from(byte_rate.filter(|r| *r > 0)?);
                return Some(u64::from(size) * 1000 / rate);
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at += 8 + size as usize + (size as usize & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_wav_reads_back_to_its_duration() {
        assert_eq!(duration_ms(&wav(2_500)), Some(2_500));
        assert_eq!(wav(1_000).len(), 44 + 48_000);
        assert_eq!(duration_ms(b"ID3 not a wav"), None);
    }
}
