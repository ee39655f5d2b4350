#!/usr/bin/env python3
"""Draws docs/gateware-blocks.png (the accelerator core's block diagram)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

BLOCKS = {  # name: (x, y, w, h, colour, label)
    "prog": (0.2, 8.6, 2.4, 0.9, "#dde", "program memory"),
    "fetch": (3.2, 8.6, 2.6, 0.9, "#dde", "fetch\n(prefetch next)"),
    "seq": (6.4, 8.6, 3.4, 0.9, "#dde", "sequencer: LOOP, t, parity,\nerror codes"),
    "wmem": (0.2, 6.6, 2.4, 0.9, "#edd", "weight memory\n(N bytes / word)"),
    "gear": (3.2, 6.6, 2.6, 0.9, "#edd", "gearbox\n16/8/6/4/2 bits"),
    "cb": (6.4, 6.6, 3.4, 0.9, "#edd", "codebook lookup\n(2 files, <=2 groups/cycle)"),
    "vmem": (0.2, 4.6, 2.4, 0.9, "#ded", "vector pool\n(N banks, contexts)"),
    "load": (3.2, 4.6, 2.6, 0.9, "#ded", "loader ->\nX1 | X2 buffers"),
    "win": (6.4, 4.6, 3.4, 0.9, "#ded", "window rotator\n(x[(p+i) mod K], seg tag)"),
    "mac": (10.4, 5.6, 2.8, 1.1, "#fe9", "N MAC lanes\n16x8 (pairs: 16x16)\nsegment shift"),
    "red": (10.4, 3.6, 2.8, 1.1, "#fe9", "adder trees T, L\nrow accumulator\n(48 bit)"),
    "epi": (6.4, 2.2, 3.4, 1.1, "#9cf", "epilogue: diag, requant,\nPWL activation, combine"),
    "wr": (3.2, 2.2, 2.6, 1.1, "#9cf", "vector writes\ndst, dst2\nperf counters"),
}
ARROWS = [("prog", "fetch"), ("fetch", "seq"), ("wmem", "gear"), ("gear", "cb"), ("cb", "mac"),
          ("vmem", "load"), ("load", "win"), ("win", "mac"), ("mac", "red"), ("red", "epi"),
          ("epi", "wr"), ("wr", "vmem"), ("seq", "mac")]


def centre(b, side):
    x, y, w, h = BLOCKS[b][:4]
    return {"r": (x + w, y + h / 2), "l": (x, y + h / 2), "t": (x + w / 2, y + h), "b": (x + w / 2, y)}[side]


def main(out=Path(__file__).with_name("gateware-blocks.png")):
    fig, ax = plt.subplots(figsize=(11, 6))
    for name, (x, y, w, h, col, label) in BLOCKS.items():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=col, ec="black"))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8.5)
    for a, b in ARROWS:
        xa, ya, wa, ha = BLOCKS[a][:4]
        xb, yb, wb, hb = BLOCKS[b][:4]
        if abs(ya - yb) < 0.5:
            p, q = (centre(a, "r"), centre(b, "l")) if xa < xb else (centre(a, "l"), centre(b, "r"))
        elif a == "wr":
            p, q = centre(a, "l"), (1.4, 4.6)
        else:
            p, q = (centre(a, "b"), centre(b, "t")) if ya > yb else (centre(a, "t"), centre(b, "b"))
            if a in ("cb", "win", "seq"):
                p, q = centre(a, "r"), centre(b, "l") if a != "seq" else centre(b, "t")
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=12, lw=1.2))
    ax.set_xlim(0, 13.5)
    ax.set_ylim(1.8, 9.8)
    ax.axis("off")
    ax.set_title("rnnaccel core: flat weight stream through N MAC lanes, fused epilogue", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
