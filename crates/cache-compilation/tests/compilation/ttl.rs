//! Time to live per level, from the config, on a manual clock: no sleeping.
