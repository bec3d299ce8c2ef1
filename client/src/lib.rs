//! Strata client tools.
