"""Import paths kept for code written against the reference implementation."""
