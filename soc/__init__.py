"""rnnaccel.soc."""
