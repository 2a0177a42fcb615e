"""Input files: TOML -> :class:`Config`, one frozen dataclass per section (defined in
:mod:`hpcdens.config_sections`, re-exported here), validated with messages that name the key, the
value, what is allowed and the fix.

Units are in the key names (``mesh_spacing_bohr``, ``smearing_kelvin``, ...). Paths inside the file
(``system.structure_file``) are relative to the input file; ``output.directory`` is relative to the
directory hpcdens is started from. The format is documented in README.md and docs/input-file.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from .config_sections import (
    CompositionsConfig,
    DescriptorConfig,
    DFTConfig,
    LearnConfig,
    ModelConfig,
    OutputConfig,
    SnapshotConfig,
    SystemConfig,
    TrainConfig,
    _fail,
    _require,
)
from .errors import CompositionError, ConfigError

__all__ = ["Config", "CompositionsConfig", "DescriptorConfig", "DFTConfig", "LearnConfig",
           "ModelConfig", "OutputConfig", "SnapshotConfig", "SystemConfig", "TrainConfig",
           "SECTIONS", "config_from_dict", "load_config"]


@dataclass(frozen=True)
class Config:
    """A whole input file. ``name`` labels the run; ``source`` is the file it came from."""

    name: str
    system: SystemConfig
    compositions: CompositionsConfig
    snapshots: SnapshotConfig = SnapshotConfig()
    dft: DFTConfig = DFTConfig()
    descriptors: DescriptorConfig = DescriptorConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()
    learn: LearnConfig = LearnConfig()
    source: Path | None = None

    def structure_file(self) -> Path | None:
        """``system.structure_file`` resolved against the input file's directory."""
        if self.system.structure_file is None:
            return None
        base = self.source.parent if self.source else Path.cwd()
        return (base / self.system.structure_file).resolve()


SECTIONS = {name: tp for name, tp in typing.get_type_hints(Config).items() if name not in ("name", "source")}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value, tp, section: str, key: str):
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _coerce(value, options[0], section, key)
        for option in options:   # e.g. str | int: the first type the value has
            try:
                return _coerce(value, option, section, key)
            except ConfigError:
                pass
        names = " or ".join(_type_name(a) for a in options)
        _fail(section, key, value, f"must be of type {names}, not {type(value).__name__}",
              f"write a {names} value")
    if origin is tuple:
        if not isinstance(value, list):
            _fail(section, key, value, f"must be a list of {_type_name(args[0])}", "write it as [a, b, ...]")
        return tuple(_coerce(v, args[0], section, key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            _fail(section, key, value, "must be a table", "write it as { Si = 5.431, Ge = 5.658 }")
        return {k: _coerce(v, args[1], section, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        _fail(section, key, value, f"must be of type {_type_name(tp)}, not {type(value).__name__}",
              f"write a {_type_name(tp)} value")
    return value


def _check_keys(table: dict, allowed: list[str], section: str):
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
            _fail(section, key, None, "unknown key", hint)


def _build(cls, table, section: str):
    if not isinstance(table, dict):
        _fail(section, "", table, "must be a table", f"write it as [{section}] with key = value lines")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(table, list(fields), section)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = _coerce(table[name], hints[name], section, name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            _fail(section, name, None, "required key is missing", f"add '{name} = ...' under [{section}]")
    return cls(**kwargs)


def config_from_dict(data: dict, source: Path | None = None) -> Config:
    """Build and validate a :class:`Config` from a parsed TOML document."""
    _check_keys(data, ["name", *SECTIONS], "top level")
    checkerboard = bool(data.get("snapshots", {}).get("checkerboard_bins", 0)) \
        if isinstance(data.get("snapshots"), dict) else False
    for required in ("system", "compositions"):
        if required not in data and not (required == "compositions" and checkerboard):
            _fail(required, "", None, "required section is missing", f"add a [{required}] table")
    name = _coerce(data.get("name", source.stem if source else "hpcdens"), str, "top level", "name")
    sections = {sec: _build(cls, data.get(sec, {}), sec) for sec, cls in SECTIONS.items()}
    config = Config(name=name, source=source, **sections)
    _cross_check(config)
    return config


def _check_compositions(section: str, key: str, specs, elements):
    from .composition import parse_composition

    for spec in specs:
        try:
            parse_composition(spec, elements)
        except CompositionError as err:
            _fail(section, key, spec, str(err), f"compositions are over system.elements = "
                  f"{list(elements)}, written like 'Si0.25Ge0.75'")


def _cross_check(config: Config):
    """Checks that involve two sections."""
    snap, elements = config.snapshots, config.system.elements
    _check_compositions("compositions", "list", config.compositions.list, elements)
    _check_compositions("snapshots", "checkerboard_compositions", snap.checkerboard_compositions,
                        elements)
    if not (config.compositions.requested() or snap.checkerboard_bins):
        _fail("compositions", "list", None, "no compositions requested",
              'give list = ["Si0.5Ge0.5"], tessellation = "T2", grid_resolution or random')
    n_sites = config.system.n_sites()
    removed = snap.vacancies + 2 * snap.divacancy
    if n_sites is not None and removed >= n_sites:
        _fail("snapshots", "vacancies", snap.vacancies,
              f"removes {removed} of the {n_sites} atoms of the cell",
              "use fewer vacancies or a larger system.supercell")
    if snap.checkerboard_bins and config.structure_file() is None:
        from .segregation import block_offset
        from .structures import build_cell

        system, bins = config.system, snap.checkerboard_bins
        lattice = build_cell(system.lattice, 1.0, system.supercell, primitive=system.primitive)
        _require(block_offset(lattice, bins) is not None, "snapshots", "checkerboard_bins", bins,
                 f"does not divide system.supercell = {list(system.supercell)} into equal blocks "
                 f"(no cut plane gives every block the same number of sites)",
                 f"use a supercell whose entries are multiples of {bins}, e.g. {[bins] * 3}")
    path = config.structure_file()
    if path is not None:
        _check_structure_file(path)


def _check_structure_file(path: Path):
    from .errors import StructureError
    from .structures import read_structure

    if not path.is_file():
        _fail("system", "structure_file", str(path), "file does not exist",
              "give a path relative to the input file")
    try:
        read_structure(path)
    except StructureError as err:
        _fail("system", "structure_file", str(path), str(err), "fix or replace the file")


def load_config(path) -> Config:
    """Read and validate an input file. Raises :class:`ConfigError` naming the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"input file {str(path)!r} does not exist. Fix: check the path "
                          "(examples are in inputs/)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); an input file "
                          "is TOML text. Fix: give the TOML input file (see inputs/), saved as "
                          "UTF-8") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}). Fix: correct the syntax there") from err
    try:
        return config_from_dict(data, source=path.resolve())
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
