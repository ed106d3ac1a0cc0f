"""Residue tables, rigid-body geometry and protein structure I/O (no model framework)."""
