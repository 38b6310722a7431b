"""The Landscape: the audit database, its schema, the single writer, read models and the ledger."""
