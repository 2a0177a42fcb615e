"""The subcommands of ``hpcdens``: one module each, holding its argparse registration
(``register(subparsers)``) and the driver that opens files, picks ranks and reports progress
(``run(args) -> exit code``). No physics here, and no command imports another."""

COMMANDS = ("structures", "generate", "train", "select_m", "calibrate", "charges", "ensemble",
            "predict", "export", "energy", "scf", "evaluate", "learn", "learn_compare", "bench")
"""Module names under ``hpcdens.commands``, in the order ``hpcdens --help`` lists them."""
