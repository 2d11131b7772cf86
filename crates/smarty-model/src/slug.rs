//! Names reduced to the characters of MQTT object ids and metric names.

/// A name reduced to `[a-z0-9_]` (lower case, anything else becomes `_`), for MQTT object ids
/// and metric names: `SAG1030700012701` → `sag1030700012701`, `my-meter` → `my_meter`.
pub fn slug(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_keep_letters_and_digits() {
        assert_eq!(slug(" SAG10-x.y "), "sag10_x_y");
        assert_eq!(slug("mbus1_gas_m3"), "mbus1_gas_m3");
    }
}
