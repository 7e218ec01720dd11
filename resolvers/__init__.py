"""The application: one module per domain, with permissions, validation and transactions."""
