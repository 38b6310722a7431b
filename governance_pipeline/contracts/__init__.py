"""The bottom layer: enums, frozen audit records, errors, ids and hashing. Imports nothing above it."""
