//! Names reduced to the characters of MQTT object ids and metric names: [`slug`], defined
//! with Home Assistant's vocabulary in `smarty-ha` (shared with the dongle's firmware).

pub use smarty_ha::slug;

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_keep_letters_and_digits() {
        assert_eq!(slug(" SAG10-x.y "), "sag10_x_y");
        assert_eq!(slug("mbus1_gas_m3"), "mbus1_gas_m3");
    }
}
