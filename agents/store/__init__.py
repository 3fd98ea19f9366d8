"""The store: every atomic write (`writes`) and the hot reads (`reads`)."""
