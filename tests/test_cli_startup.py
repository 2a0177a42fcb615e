"""``hpcdens --help`` and every ``hpcdens CMD --help`` stay fast: building the parser and the help
of every (sub)command imports no numerical or parallel library (issue #16). The commands import
what their ``run`` needs inside it; constants shown in help texts live in
:mod:`hpcdens.constants`. Checked in a fresh interpreter, so earlier tests' imports do not count.
numpy is not imported either, but it is cheap enough not to be asserted."""

import json
import subprocess
import sys

HEAVY = ("torch", "scipy", "h5py", "pyscf", "matplotlib", "mpi4py", "ase")

PROBE = """
import argparse, json, sys
import hpcdens.cli as c

def helps(parser):
    yield parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from helps(sub)

texts = list(helps(c.make_parser()))
print(json.dumps({"helps": len(texts), "modules": sorted(sys.modules)}))
"""


def test_parser_and_all_help_texts_import_no_heavy_module():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["helps"] > 12  # hpcdens, its 12 commands and the bench subcommands
    loaded = [m for m in result["modules"] if m.split(".")[0] in HEAVY]
    assert not loaded, f"building the parser imported {sorted({m.split('.')[0] for m in loaded})}"
