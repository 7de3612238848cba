"""ska stages."""
