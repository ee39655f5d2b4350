#!/usr/bin/env python3
"""Fixed-point agreement with TensorFlow for the four Hello Edge models at every weight mode
(the `rnnaccel reference-check` numbers as one markdown table)."""
import argparse
from pathlib import Path

from rnnaccel.host.refcheck import reference_check
from rnnaccel.host.spec import WEIGHT_MODES

HE = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "hello-edge"
MODELS = ["GRU_S", "Basic_LSTM_S", "LSTM_S", "DNN_S"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default=str(HE), help="folder with the .pb files and reference/")
    a = ap.parse_args()
    print("| model | bits | compression | image bytes | top-1 agreement with TF | held-out half | max abs logit diff |")
    print("|---|---|---|---|---|---|---|")
    for m in MODELS:
        for b in WEIGHT_MODES:
            r = reference_check(Path(a.dir) / f"{m}.pb", Path(a.dir) / "reference", b)
            print(f"| {m} | {b} | {r['compression']:.2f}x | {r['image_bytes']:,} | {r['fixed_top1_agreement']:.3f} "
                  f"| {r['fixed_top1_agreement_heldout']:.3f} | {r['fixed_max_abs_diff']:.3f} |")
    print(f"\nMFCC and float checks: max |MFCC - TF| = {r['mfcc_max_abs_diff']:.2g}, "
          f"float logits within {r['float_max_abs_diff']:.2g} of TF ({m})")


if __name__ == "__main__":
    main()
