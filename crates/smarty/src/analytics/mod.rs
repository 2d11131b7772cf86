//! Analytics over the stored history: Luxembourg's grid tariff.

pub mod tariff;
