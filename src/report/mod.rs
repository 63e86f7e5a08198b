//! Turns scan results into statuses, tables and JSON lines. Pure.
