"""PyTorch modules shared by the importer tests (imported only where torch is present)."""
import numpy as np
import torch
from torch import nn


def data(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class Seq(nn.Module):
    """An RNN's full output sequence."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]


class KWS(nn.Module):
    """The common keyword-spotting shape: RNN -> last step -> Linear."""

    def __init__(self, rnn, n_out=4):
        super().__init__()
        self.rnn = rnn
        width = rnn.hidden_size if not getattr(rnn, "proj_size", 0) else rnn.proj_size
        self.fc = nn.Linear(width * (2 if rnn.bidirectional else 1), n_out)

    def forward(self, x):
        out, _ = self.rnn(x)
        out = out[:, -1] if self.rnn.batch_first else out[-1]
        return self.fc(out)


class KWSState(nn.Module):
    """Same, classifying the final hidden state h_n[-1] through `head`."""

    def __init__(self, rnn, head=torch.sigmoid):
        super().__init__()
        self.rnn = rnn
        self.head = head
        self.lstm = isinstance(rnn, nn.LSTM)
        self.fc = nn.Linear(rnn.hidden_size, 3)

    def forward(self, x):
        _, h = self.rnn(x)
        if self.lstm:  # fx traces Python control flow on attributes, not on tensors
            h = h[0]
        return self.head(self.fc(h[-1]))
