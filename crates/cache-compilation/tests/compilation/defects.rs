//! Regressions of the original's defects that concern this domain.
