"""rnnaccel.gateware."""
