"""poh stages."""
