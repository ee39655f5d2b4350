"""A zoo of small random models, one per family the IR supports (GRU in both reset conventions,
LSTM basic/peephole/projection, DNN, MLP activations, bidirectional, stacked, reversed, wide rows).

Used by the tests (compiler, simulator, RTL) and by `rnnaccel regress` (host-vs-device regression).
Sizes are deliberately not multiples of anything, so every padding and wrap path runs.
"""
import numpy as np

from .ir import FC, Flatten, GRUCell, LSTMCell, Model, Recurrent

I, H, T, C = 10, 24, 12, 12


def _gru(rng, i, h, reset_after):
    return GRUCell(rng.normal(0, .3, (3 * h, i)), rng.normal(0, .3, (3 * h, h)),
                   rng.normal(0, .1, 3 * h), rng.normal(0, .1, 3 * h), reset_after=reset_after)


def _lstm(rng, i, h, peep=False, proj=None):
    r = proj or h
    p = (lambda: rng.normal(0, .3, h)) if peep else (lambda: None)
    return LSTMCell(rng.normal(0, .3, (4 * h, i)), rng.normal(0, .3, (4 * h, r)), rng.normal(0, .1, 4 * h),
                    forget_bias=1.0, p_i=p(), p_f=p(), p_o=p(),
                    w_proj=rng.normal(0, .3, (proj, h)) if proj else None)


def _fc(rng, i, o, act="none", name="fc"):
    return FC(rng.normal(0, .3, (o, i)), rng.normal(0, .1, o), act, name=name)


def families(seed=0):
    """name -> Model; sizes deliberately not multiples of anything."""
    rng = np.random.default_rng(seed)
    return {
        "gru_tf": Model([Recurrent(_gru(rng, I, H, False), return_sequences=False), _fc(rng, H, C)], I, T),
        "gru_torch": Model([Recurrent(_gru(rng, I, H, True), return_sequences=False), _fc(rng, H, C)], I, T),
        "lstm": Model([Recurrent(_lstm(rng, I, H), return_sequences=False), _fc(rng, H, C)], I, T),
        "lstm_peep_proj": Model([Recurrent(_lstm(rng, I, H, True, 17), return_sequences=False),
                                 _fc(rng, 17, C)], I, T),
        "dnn": Model([Flatten(), _fc(rng, I * T, 40, "relu", "fc1"), _fc(rng, 40, 30, "relu", "fc2"),
                      _fc(rng, 30, C, name="out")], I, T),
        "mlp_acts": Model([_fc(rng, I, 20, "sigmoid", "a"), _fc(rng, 20, 20, "tanh", "b"),
                           _fc(rng, 20, 20, "softsign", "c"), _fc(rng, 20, C, name="d")], I, T),
        "bidir_seq": Model([Recurrent(_gru(rng, I, H, True), backward=_gru(rng, I, H, True), name="bi"),
                            _fc(rng, 2 * H, C)], I, T),
        "stacked_bidir_lstm": Model([Recurrent(_lstm(rng, I, H), backward=_lstm(rng, I, H), name="l1"),
                                     Recurrent(_gru(rng, 2 * H, H, False), return_sequences=False, name="l2"),
                                     _fc(rng, H, C)], I, T),
        "stacked_gru": Model([Recurrent(_gru(rng, I, H, False), name="g1"),
                              Recurrent(_gru(rng, H, H + 5, False), name="g2"),
                              Recurrent(_lstm(rng, H + 5, H), return_sequences=False, name="g3"),
                              _fc(rng, H, C)], I, T),
        "reverse_seq_out": Model([Recurrent(_lstm(rng, I, H, True), reverse=True, name="rev")], I, T),
        # rows longer than 64 and not a multiple of any array width: windows wrap mid-cycle
        "gru_wide": Model([Recurrent(_gru(rng, I, 61, False), return_sequences=False), _fc(rng, 61, C)], I, T),
    }


def inputs(model, n=16, seed=1, scale=2.0):
    return np.random.default_rng(seed).normal(0, scale, (n, model.steps, model.in_features))
