//! Where raw frames travel on NATS: one subject per meter, named by its system title, and a
//! message id per frame so that JetStream drops a publisher's resends.
//!
//! - subject `smarty.raw.<system title in upper-case hex>` (`smarty.raw.5341471030700100`);
//!   through NATS's MQTT listener the topic `smarty/raw/<system title>` is the same subject;
//! - message id `<system title>:<frame counter>` (`5341471030700100:1234`);
//! - partition: a meter's frames all land in one of `n` partitions, so that one consumer at a
//!   time handles a meter and its frames stay in order (NATS 2.9 consumers filter on one
//!   subject each: a partition is the set of meters whose title hashes to it).

/// The prefix of every raw frame's subject.
pub const PREFIX: &str = "smarty.raw";

/// The subject of the raw frames of the meter with `system_title`.
///
/// # Example
/// ```
/// let title = *b"SAG\x10\x30\x70\x01\x00";
/// assert_eq!(smarty_fleet::subject::raw(&title), "smarty.raw.5341471030700100");
/// ```
pub fn raw(system_title: &[u8; 8]) -> String {
    format!("{PREFIX}.{}", smarty_p1::hex::upper(system_title))
}

/// The MQTT topic of the raw frames of the meter with `system_title`, for NATS's MQTT
/// listener: `smarty/raw/<system title>`, which NATS maps to the subject [`raw`].
///
/// # Example
/// ```
/// let title = *b"SAG\x10\x30\x70\x01\x00";
/// assert_eq!(smarty_fleet::subject::mqtt_topic(&title), "smarty/raw/5341471030700100");
/// ```
pub fn mqtt_topic(system_title: &[u8; 8]) -> String {
    raw(system_title).replace('.', "/")
}

/// The message id of a frame: `<system title>:<frame counter>`.
///
/// # Example
/// ```
/// let title = *b"SAG\x10\x30\x70\x01\x00";
/// assert_eq!(smarty_fleet::subject::message_id(&title, 1234), "5341471030700100:1234");
/// ```
pub fn message_id(system_title: &[u8; 8], frame_counter: u32) -> String {
    format!("{}:{frame_counter}", smarty_p1::hex::upper(system_title))
}

/// The system title a raw frame's subject names, if it is one (16 hex digits after
/// [`PREFIX`]).
///
/// # Example
/// ```
/// assert_eq!(
///     smarty_fleet::subject::system_title("smarty.raw.5341471030700100"),
///     Some(*b"SAG\x10\x30\x70\x01\x00")
/// );
/// assert_eq!(smarty_fleet::subject::system_title("smarty.raw.nonsense"), None);
/// ```
pub fn system_title(subject: &str) -> Option<[u8; 8]> {
    let hex = subject.strip_prefix(PREFIX)?.strip_prefix('.')?;
    if hex.len() != 16 {
        return None;
    }
    smarty_p1::hex::decode(hex).ok()?.try_into().ok()
}

/// The partition (`0..partitions`) of the meter with `system_title`: FNV-1a of the title,
/// stable across versions and machines.
pub fn partition(system_title: &[u8; 8], partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in system_title {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_meters_and_keep_each_in_one() {
        let mut counts = [0u32; 4];
        for i in 0u32..4000 {
            let mut title = *b"SAG\0\0\0\0\0";
            title[4..].copy_from_slice(&i.to_be_bytes());
            let p = partition(&title, 4);
            assert_eq!(p, partition(&title, 4));
            counts[p as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
    }
}
