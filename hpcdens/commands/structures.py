"""``hpcdens structures``: the structures of an input file as extxyz."""

from __future__ import annotations

from pathlib import Path

from ..io.files import output_file


def run(args) -> int:
    from ..config import load_config
    from ..plan import build_plan
    from ..structures import write_structures

    config = load_config(args.config)
    out = output_file(args.out or Path(config.output.directory) / "structures.extxyz", args.overwrite,
                      "structure file")
    tasks = build_plan(config)
    frames = [task.build_atoms() for task in tasks]
    write_structures(out, frames)
    print(f"wrote {len(frames)} structures ({len(set(t.composition for t in tasks))} compositions "
          f"x {config.snapshots.per_composition} snapshots) to {out}")
    return 0


def register(sub):
    p = sub.add_parser("structures", help="build the structures of an input file and write extxyz",
                       description="Build every (composition, snapshot) structure of CONFIG and write "
                       "them to one extended-XYZ file that ASE reads (default: "
                       "<output.directory>/structures.extxyz).")
    p.add_argument("config", help="input file (TOML), see inputs/")
    p.add_argument("--out", help="output .extxyz file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)
