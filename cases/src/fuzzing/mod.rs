//! Fuzzing support shared by the cargo-fuzz targets and the regression rows
//! of the case table.
