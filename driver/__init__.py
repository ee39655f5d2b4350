"""rnnaccel.driver."""
