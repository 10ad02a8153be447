"""One adapter per Google service, each with its own error-mapping table."""
