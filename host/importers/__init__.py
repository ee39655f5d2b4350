"""Importers: framework models -> rnnaccel IR."""
