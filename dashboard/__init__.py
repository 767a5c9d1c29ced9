"""The trader-facing app: symbols, the wire protocol, consumers, views and admin."""
