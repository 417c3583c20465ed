//! End-to-end tests across the workspace's programs live in `tests/`; this library is empty.
