"""A multimodal data catalogue on embedded DuckDB: sources, subjects, provenance, de-duplication, cohorts."""
