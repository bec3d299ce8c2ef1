//! Strata device registry (being implemented).
