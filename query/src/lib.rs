//! Strata SQL layer (being implemented).
