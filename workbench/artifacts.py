"""Artifacts: which files make up one model, recognised in one place.

``identify(*paths_or_specs)`` tells what a set of files (or a PyTorch factory spec)
is: an ``Artifact`` with its kind, each file by the role it plays, and the
provenance sidecar a writer put beside it. ``load`` reads an artifact, ``open_runner``
runs it, ``map_names`` maps its names, and ``compare`` describes it, all from this
one answer; none of them looks at file suffixes.

The kinds, each declared once in ``KINDS``:

============== ======================================== =====================================
kind           files                                    provenance sidecar
============== ======================================== =====================================
onnx           ``*.onnx`` (+ ``*.onnx.data``)           in the file (node metadata)
caffe          ``*.prototxt`` + ``*.caffemodel``        ``NAME.provenance.json`` (Caffe writer)
mxnet          ``*-symbol.json`` + ``*.params``         none
msnhnet        ``*.msnhnet`` + ``*.msnhbin``            ``NAME.provenance.json`` (MsnhNet writer)
pytorch        ``package.module:factory`` (+ ``*.pt``)  none (module paths are the names)
pytorch-folder a folder with ``model.py`` + ``weights.pt`` ``provenance.json`` (PyTorch writer)
recording      ``*.npz`` of named outputs               in the file, or ``NAME-symbol.json``
============== ======================================== =====================================

A new format is one more ``ArtifactKind`` in ``KINDS``; what can be done with it is
registered where it is done (``readers.READERS``, ``runners.RUNNERS``,
``map_names.TARGET_ENTRIES``), each of which names the kinds it supports when
asked for one it does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from .errors import InputError

# ``package.module:factory``: a dotted module path, a colon, a Python name
SPEC_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
SPEC = "package.module:factory"


@dataclass(frozen=True)
class Role:
    """One file an artifact kind is made of, recognised by a name pattern
    (``fnmatch`` on the file name; ``SPEC`` for a factory spec)."""

    name: str
    pattern: str
    optional: bool = False

    def matches(self, given: str) -> bool:
        if self.pattern == SPEC:
            return bool(SPEC_PATTERN.match(given)) and not Path(given).exists()
        return fnmatch(Path(given).name, self.pattern)


def _caffe_sidecar(files: Mapping[str, Path]) -> Path:
    from .writers.caffe.sidecar import sidecar_path

    return sidecar_path(files["prototxt"])


def _msnhnet_sidecar(files: Mapping[str, Path]) -> Path:
    from .writers.msnhnet.sidecar import sidecar_path

    return sidecar_path(files["model"])


def _pytorch_sidecar(files: Mapping[str, Path]) -> Path:
    from .writers.pytorch.sidecar import sidecar_path

    return sidecar_path(files["code"].parent)


@dataclass(frozen=True)
class ArtifactKind:
    """A kind of model artifact: the roles of its files, whether it is given as a
    folder holding them, and where its writer's provenance sidecar lies."""

    name: str
    roles: tuple[Role, ...]
    folder: bool = False  # given as a folder holding each role's file by its name
    sidecar: Callable[[Mapping[str, Path]], Path] | None = None
    sidecar_role: str = "sidecar"  # the role of the sidecar when it is passed with the files

    def pattern(self) -> str:
        """What a user passes, e.g. ``*.prototxt + *.caffemodel``."""
        required = " + ".join(role.pattern for role in self.roles if not role.optional)
        return f"a folder with {required}" if self.folder else required

    def match(self, given: tuple[str, ...]) -> dict[str, str] | None:
        """Role -> given name, when ``given`` is exactly one artifact of this kind."""
        if self.folder:
            return self._match_folder(given)
        assigned: dict[str, str] = {}
        for name in given:
            role = next((r for r in self.roles if r.name not in assigned and r.matches(name)), None)
            if role is None:
                return None
            assigned[role.name] = name
        complete = all(role.optional or role.name in assigned for role in self.roles)
        return assigned if complete else None

    def _match_folder(self, given: tuple[str, ...]) -> dict[str, str] | None:
        if len(given) == 1 and Path(given[0]).is_dir():
            folder = Path(given[0])
            return {role.name: str(folder / role.pattern) for role in self.roles if not role.optional}
        return ArtifactKind(self.name, self.roles).match(given)


KINDS: tuple[ArtifactKind, ...] = (
    ArtifactKind("onnx", (Role("model", "*.onnx"), Role("data", "*.onnx.data", optional=True))),
    ArtifactKind(
        "caffe",
        (
            Role("prototxt", "*.prototxt"),
            Role("caffemodel", "*.caffemodel"),
            Role("sidecar", "*.provenance.json", optional=True),
        ),
        sidecar=_caffe_sidecar,
    ),
    ArtifactKind("mxnet", (Role("symbol", "*-symbol.json"), Role("params", "*.params"))),
    ArtifactKind(
        "msnhnet",
        (Role("model", "*.msnhnet"), Role("weights", "*.msnhbin"), Role("sidecar", "*.provenance.json", optional=True)),
        sidecar=_msnhnet_sidecar,
    ),
    ArtifactKind("pytorch", (Role("factory", SPEC), Role("weights", "*.pt", optional=True))),
    ArtifactKind(
        "pytorch-folder",
        (Role("code", "model.py"), Role("weights", "weights.pt"), Role("sidecar", "provenance.json", optional=True)),
        folder=True,
        sidecar=_pytorch_sidecar,
    ),
    ArtifactKind("recording", (Role("recording", "*.npz"),)),
)
KIND_NAMES = tuple(kind.name for kind in KINDS)


@dataclass(frozen=True)
class Artifact:
    """One model as files: its kind, each file by role, and the provenance sidecar
    its writer left (``None`` when there is none)."""

    kind: str
    files: Mapping[str, Path] = field(default_factory=dict)
    spec: str | None = None  # ``package.module:factory`` for a PyTorch factory
    sidecar: Path | None = None
    given: tuple[str, ...] = ()  # the names as the user passed them

    def path(self, role: str) -> Path:
        """The file playing ``role`` (e.g. ``"prototxt"``)."""
        try:
            return self.files[role]
        except KeyError:
            raise InputError(
                f"the {self.kind} artifact has no {role} file",
                expected=", ".join(self.files) or "no files",
                remedy="pass every file of the model",
            ) from None

    def optional_path(self, role: str) -> Path | None:
        return self.files.get(role)

    @property
    def paths(self) -> tuple[str, ...]:
        """The spec and the model's files (the sidecar left out), as ``SourceInfo.paths`` keeps them."""
        files = [str(path) for path in self.files.values() if path != self.sidecar]
        return (self.spec, *files) if self.spec else tuple(files)

    def describe(self) -> str:
        """The names as given, without the sidecar: ``net.prototxt + net.caffemodel``."""
        sidecar = self.sidecar.name if self.sidecar else None
        return " + ".join(Path(name).name for name in self.given if Path(name).name != sidecar)

    def require_files(self) -> None:
        """An InputError naming the first file of the artifact that does not exist."""
        for path in self.files.values():
            if not path.is_file():
                raise InputError(f"no such file: {path}", remedy="check the path")


def identify(*sources: str | Path | object) -> Artifact:
    """The artifact the given files (or ``package.module:factory`` spec) make up.

    ``WrittenFiles`` (what a writer returns) counts as its files. Recognition goes
    by names alone (files need not exist yet: ``require_files`` checks them); an
    InputError lists what fits when nothing does.
    """
    given = _names(sources)
    for kind in KINDS:
        roles = kind.match(given)
        if roles is not None:
            return _artifact(kind, roles, given)
    raise InputError(
        "cannot tell the source format from the files given",
        expected="; ".join(kind.pattern() for kind in KINDS),
        found=" ".join(given) or "nothing",
        remedy="pass the files that make up one model (e.g. deploy.prototxt net.caffemodel)",
    )


def _names(sources: tuple[object, ...]) -> tuple[str, ...]:
    from .writers.files import WrittenFiles

    if len(sources) == 1 and isinstance(sources[0], WrittenFiles):
        return tuple(str(path) for path in sources[0].paths)
    return tuple(str(source) for source in sources)


def _artifact(kind: ArtifactKind, roles: Mapping[str, str], given: tuple[str, ...]) -> Artifact:
    spec = next((roles[role.name] for role in kind.roles if role.pattern == SPEC and role.name in roles), None)
    files = {role: Path(name) for role, name in roles.items() if name != spec}
    sidecar = files.get(kind.sidecar_role)
    if sidecar is None and kind.sidecar is not None:
        beside = kind.sidecar(files)
        sidecar = beside if beside.is_file() else None
    return Artifact(kind.name, files, spec, sidecar, given)


__all__ = ["KINDS", "KIND_NAMES", "Artifact", "ArtifactKind", "Role", "identify"]
