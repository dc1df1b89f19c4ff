//! Table tests of `translate`.
