"""``hpcdens ensemble``: bundle several trainings of one input into one model file."""

from __future__ import annotations


def run(args) -> int:
    """``hpcdens ensemble`` (argparse namespace -> exit code)."""
    from pathlib import Path

    from ..errors import InputError
    from ..io.model import save_ensemble

    if Path(args.out).exists() and not args.overwrite:
        raise InputError(f"{args.out} exists. Fix: another --out, or --overwrite to replace it")
    members = save_ensemble(args.out, args.models).training["ensemble"]
    print(f"wrote {args.out}: an ensemble of {len(members)} trainings, N_s = "
          f"{sum(m['n_samples'] for m in members)} weight samples in all")
    for m in members:
        print(f"  {m['path']}: N_s {m['n_samples']}, [train] seed {m['train_seed']}, "
              f"weights {m['weights_sha256'][:12]}")
    return 0


def register(sub):
    """Add the ``ensemble`` subcommand to ``sub`` (argparse subparsers); returns the parser."""
    p = sub.add_parser(
        "ensemble", help="bundle trainings of one input with other seeds into one model file",
        description="Write one model file holding MODEL... (two or more trainings of the same "
        "input with other [train] seed values: same network, descriptors, species, target and "
        "DFT settings). predict and evaluate use all their "
        "weight samples pooled: the mean over the members, an epistemic std that includes their "
        "disagreement. Serial, seconds. See docs/commands/ensemble.md.")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model files from 'hpcdens train'")
    p.add_argument("--out", required=True, help="the ensemble model file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)
    return p
