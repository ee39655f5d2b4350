"""Keyword-spotting data sets (synthetic espeak-ng keywords, Google Speech Commands)."""
