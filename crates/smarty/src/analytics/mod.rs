//! Analytics over the stored history: Luxembourg's grid tariff.

#[allow(dead_code)] // used by the web API; not every item is wired up yet
pub mod tariff;
