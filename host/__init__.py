"""rnnaccel.host."""
