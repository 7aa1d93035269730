//! Minimal classic-pcap (libpcap 2.4, Ethernet) reading and writing, for the
//! golden packet tests and the traffic generator. Not used on the packet path.

use std::io::{self, Read, Write};

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const LINKTYPE_ETHERNET: u32 = 1;

/// Writes `frames` as a pcap file (timestamps 1 µs apart).
pub fn write(mut out: impl Write, frames: &[Vec<u8>]) -> io::Result<()> {
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&MAGIC_MICROS.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    header.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    header.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    out.write_all(&header)?;
    for (i, frame) in frames.iter().enumerate() {
        let mut record = Vec::with_capacity(16);
        record.extend_from_slice(&0u32.to_le_bytes());
        record.extend_from_slice(&(i as u32).to_le_bytes());
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.write_all(&record)?;
        out.write_all(frame)?;
    }
    Ok(())
}

/// Reads every frame of a pcap file (either byte order, µs or ns stamps).
pub fn read(mut input: impl Read) -> io::Result<Vec<Vec<u8>>> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("pcap: {what}"));
    if bytes.len() < 24 {
        return Err(bad("file shorter than its header"));
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let little = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => return Err(bad("unknown magic number")),
    };
    let word = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    if word(20) != LINKTYPE_ETHERNET {
        return Err(bad("link type is not Ethernet"));
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        if at + 16 > bytes.len() {
            return Err(bad("truncated record header"));
        }
        let captured = word(at + 8) as usize;
        at += 16;
        let frame = bytes
            .get(at..at + captured)
            .ok_or_else(|| bad("truncated record"))?;
        frames.push(frame.to_vec());
        at += captured;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frames = vec![vec![1u8, 2, 3], vec![], vec![0xff; 1514]];
        let mut file = Vec::new();
        write(&mut file, &frames).unwrap();
        assert_eq!(file.len(), 24 + 3 * 16 + 3 + 1514);
        assert_eq!(read(&file[..]).unwrap(), frames);
    }

    #[test]
    fn rejects_garbage() {
        assert!(read(&[0u8; 10][..]).is_err());
        assert!(read(&[0u8; 24][..]).is_err());
        let mut file = Vec::new();
        write(&mut file, &[vec![1, 2, 3]]).unwrap();
        file.pop();
        assert!(read(&file[..]).is_err());
    }
}
