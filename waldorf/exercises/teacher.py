"""Exercises of one chapter (to be written)."""
