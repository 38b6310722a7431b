"""Data protection: retention and purge, legal holds, erasure by subject (docs/data_protection.md)."""
