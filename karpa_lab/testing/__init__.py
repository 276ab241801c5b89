"""Helpers for the course's own test suite (not needed by learners)."""
