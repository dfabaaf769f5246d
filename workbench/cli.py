"""The ``workbench`` command: a thin layer over the API.

Subcommands follow the CLI contract of the design: ``convert``, ``compare``,
``check``, ``record`` and ``lab``. ``convert`` and ``check`` run the conversion
chain (``workbench.chain.Chain``), ``compare`` the ``compare`` step. Every step
prints one progress line (step, summary, seconds). Exit status: 0 converted and verified, 1 converted but the
outputs differ beyond tolerance (or a recorded notebook failed), 2 bad input or
unsupported ops (every problem listed at once). Bad input never shows a
traceback: a ``WorkbenchError`` becomes its message on stderr.

A command imports only what it runs (the chain, onnxruntime, OpenCV, torch,
Jupyter are imported inside the handlers), so ``workbench --help`` answers at once
and ``workbench check`` never loads torch.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import InputError, WorkbenchError
from .steps.compare_stats import DEFAULT_ATOL, DEFAULT_RTOL
from .targets import TARGETS

if TYPE_CHECKING:
    import numpy as np

    from .chain import Chain
    from .graph import StepReport
    from .records import Outcome

EXIT_OK, EXIT_DIFFERENT, EXIT_BAD_INPUT = 0, 1, 2
DIALECTS = ("bvlc", "opencv")
DEFAULT_KERNEL = "python3"  # for notebooks saved without kernel metadata


def progress(report: StepReport, *, shown: Collection[str] = ()) -> None:
    """One line per step, then its warnings (those not in ``shown`` already)."""
    print(f"{report.step:<14} {report.summary}  ({report.seconds:.2f} s)", flush=True)
    for warning in report.warnings:
        if warning not in shown:
            print(f"{'':<14} ! {warning}", flush=True)


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise InputError(
            "cannot read --input-shape",
            expected="positive integers separated by commas, e.g. 1,3,224,224",
            found=text,
        )
    return tuple(int(part) for part in parts)


def parse_value(text: str) -> Any:
    """A notebook parameter: a Python literal when it reads as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _target_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.dialect is None:
        return {}
    if args.to != "caffe":
        raise InputError("--dialect applies to Caffe only", found=f"--to {args.to}", remedy="drop --dialect")
    return {"dialect": args.dialect}


def _chain(args: argparse.Namespace, *, outdir: str | None = None, verify: bool = False) -> Chain:
    """The conversion chain the source options describe."""
    from .chain import Chain

    return Chain(
        args.sources,
        args.to,
        outdir,
        input_shape=parse_shape(args.input_shape),
        weights=args.weights,
        name=getattr(args, "name", None),
        simplify=args.simplify,
        fold_bn=args.fold_bn,
        verify=verify,
        options=_target_options(args),
        atol=getattr(args, "atol", DEFAULT_ATOL),
        rtol=getattr(args, "rtol", DEFAULT_RTOL),
    )


def _run_steps(chain: Chain, until: str | None = None, *, quiet_check: bool = False) -> None:
    """Run the chain's steps, printing each one's reports; the first error is raised."""
    for step in chain.pending(until):
        run = chain.run(step)
        run.raise_for_error()
        check_warnings = chain.check_report.report.warnings if chain.check_report is not None else []
        shown = check_warnings if step == "write" or (step == "check" and quiet_check) else ()
        for report in run.reports:
            progress(report, shown=shown)


def _write_json(path: str | Path, data: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, default=str))


def print_comparison(comparison: Any) -> None:
    """The per-output table: max_abs, mean_abs, max_rel, cosine and pass/fail."""
    print(f"{'output':<32} {'max_abs':>10} {'mean_abs':>10} {'max_rel':>10} {'cosine':>9}  result")
    for pair in comparison.outputs:
        label = pair.source if pair.target == pair.source else f"{pair.source} → {pair.target}"
        stats = pair.stats
        print(
            f"{label:<32} {stats.max_abs:>10.3g} {stats.mean_abs:>10.3g} {stats.max_rel:>10.3g} "
            f"{stats.cosine:>9.6f}  {'pass' if pair.ok else 'FAIL'}"
        )


def run_convert(args: argparse.Namespace) -> int:
    chain = _chain(args, outdir=args.output, verify=True)
    _run_steps(chain)
    comparison = chain.comparison
    if comparison is None:  # verify always runs in convert
        raise WorkbenchError("the written files were not verified")
    print_comparison(comparison)
    if args.report:
        _write_json(args.report, chain.to_report())
        print(f"{'report':<14} {args.report}")
    return EXIT_OK if comparison.ok else EXIT_DIFFERENT


def _read_inputs(path: str | None) -> dict[str, np.ndarray] | list[np.ndarray] | None:
    """``.npy`` (one input) or ``.npz`` (inputs by name), never unpickling objects."""
    if path is None:
        return None
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError as error:
        raise InputError(f"no such input file: {path}", remedy="check the path") from error
    except ValueError as error:
        raise InputError(
            f"cannot read inputs from {path}",
            expected="a .npy array or an .npz of arrays by input name (no pickled objects)",
            found=str(error).splitlines()[0],
        ) from error
    if isinstance(data, np.ndarray):
        return [data]
    return {name: data[name] for name in data.files}


def run_compare(args: argparse.Namespace) -> int:
    from .graph import StepReport
    from .steps.compare import compare

    if args.input is not None and args.input_shape is not None:
        raise InputError(
            "--input and --input-shape both say what to compare on",
            found=f"--input {args.input} --input-shape {args.input_shape}",
            remedy="give one of them",
        )
    start = time.perf_counter()
    comparison = compare(
        list(args.sources),
        list(args.against),
        _read_inputs(args.input),
        input_shape=parse_shape(args.input_shape),
        per_layer=args.per_layer or args.plot is not None,  # the plot is per layer
        atol=args.atol,
        rtol=args.rtol,
    )
    summary = f"{comparison.summary()}: {comparison.reference} against {comparison.candidate}"
    progress(StepReport("compare", summary, seconds=time.perf_counter() - start))
    print_comparison(comparison)
    if comparison.layers:
        failing = len(comparison.failing_layers)
        print(f"{'layers':<14} {len(comparison.layers)} compared, {failing} beyond tolerance")
    if comparison.first_divergence is not None:
        print(f"{'divergence':<14} {comparison.first_divergence.explanation}")
    if args.report:
        _write_json(args.report, comparison.to_report())
        print(f"{'report':<14} {args.report}")
    if args.plot:
        comparison.plot(args.plot)
        print(f"{'plot':<14} {args.plot}")
    return EXIT_OK if comparison.ok else EXIT_DIFFERENT


def run_check(args: argparse.Namespace) -> int:
    chain = _chain(args)
    _run_steps(chain, until="check", quiet_check=True)
    report = chain.check_report
    if report is None:  # check always runs in check
        raise WorkbenchError("the model was not checked")
    print(report)
    return EXIT_OK if report.ok else EXIT_BAD_INPUT


def run_record(args: argparse.Namespace) -> int:
    """Execute a notebook with papermill, then write the record's header at its top
    (``records.finish_record``): exit 0 when it ran to the end and its verdict holds."""
    notebook, output = Path(args.notebook), Path(args.output)
    _check_record_arguments(notebook, output, args.timeout)
    from .graph import StepReport
    from .records import finish_record

    source = _read_notebook(notebook)
    parameters = {name: parse_value(value) for name, value in args.parameters or []}
    shown = {name: (default, False) for name, default in declared_parameters(source).items()}
    shown.update({name: (repr(value), True) for name, value in parameters.items()})
    output.parent.mkdir(parents=True, exist_ok=True)
    outcome = _execute_notebook(notebook, output, source.metadata.get("kernelspec", {}), parameters, args.timeout)
    verdict_holds, title = finish_record(output, notebook.name, outcome, shown, args.timeout)
    summary = f"{notebook.name} → {output} with {parameters or 'default parameters'}: {title}"
    progress(StepReport("record", summary, seconds=outcome.seconds))
    if outcome.status != "completed":
        where = f" in cell {outcome.cell}" if outcome.cell is not None else ""
        print(f"error: {notebook} {outcome.status}{where}: {outcome.error}", file=sys.stderr)
        print(f"the executed notebook, with the error, is in {output}", file=sys.stderr)
    if args.html:
        html_path = output.with_suffix(".html")
        _export_html(output, html_path)
        print(f"{'html':<14} {html_path}")
    return EXIT_OK if outcome.status == "completed" and verdict_holds is not False else EXIT_DIFFERENT


def _check_record_arguments(notebook: Path, output: Path, timeout: float | None) -> None:
    """Refuse, before anything runs, a missing notebook, a record that would overwrite it
    and a timeout that is not a positive number of seconds."""
    if not notebook.is_file():
        raise InputError(f"no such notebook: {notebook}", remedy="check the path")
    if output.resolve() == notebook.resolve():
        raise InputError(
            "the record would overwrite the notebook it runs", found=str(output), remedy="choose another -o"
        )
    if timeout is not None and timeout <= 0:
        raise InputError("--timeout must be positive", found=str(timeout), remedy="give seconds per cell, e.g. 600")


def _read_notebook(notebook: Path) -> Any:
    """The notebook as nbformat reads it (version 4), or one InputError saying why it cannot be read."""
    import nbformat

    try:
        return nbformat.read(notebook, as_version=4)
    except Exception as error:  # nbformat raises JSON, validation and reader errors
        raise InputError(
            f"{notebook} is not a readable notebook",
            expected="a Jupyter notebook (.ipynb, nbformat 4)",
            found=str(error).splitlines()[0],
            remedy="open and save it in Jupyter, or pass another notebook",
        ) from error


def _execute_notebook(
    notebook: Path, output: Path, kernelspec: dict[str, Any], parameters: dict[str, Any], timeout: float | None
) -> Outcome:
    """Run ``notebook`` into ``output`` with papermill: completed, failed in a cell or timed out
    (a missing kernel is a WorkbenchError). The default kernel and language stand in for a
    notebook that names none."""
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError

    from .records import Outcome

    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=None if kernelspec.get("name") else DEFAULT_KERNEL,
            language=None if kernelspec.get("language") else "python",
            progress_bar=False,
            execution_timeout=timeout,
        )
    except NoSuchKernel as error:
        raise WorkbenchError(
            f"the notebook's kernel {error.args[0] if error.args else ''!s} is not installed",
            remedy=f"{sys.executable} -m ipykernel install --sys-prefix --name python3",
        ) from error
    except papermill.PapermillExecutionError as error:
        cell = f"[{error.exec_count}]" if error.exec_count is not None else None
        return Outcome("failed", time.perf_counter() - start, cell, f"{error.ename}: {error.evalue}")
    except CellTimeoutError as error:
        return Outcome("timed out", time.perf_counter() - start, _stopped_cell(output), str(error).splitlines()[0])
    return Outcome("completed", time.perf_counter() - start)


def declared_parameters(notebook: Any) -> dict[str, str]:
    """The parameters a notebook declares in its ``parameters`` cell, with their
    defaults as written (papermill's reading of the cell)."""
    from papermill.translators import papermill_translators

    cell = next((c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    kernelspec = notebook.metadata.get("kernelspec", {})
    translator = papermill_translators.find_translator(
        kernelspec.get("name", DEFAULT_KERNEL), kernelspec.get("language", "python")
    )
    return {parameter.name: parameter.default for parameter in translator.inspect(cell)}


def _stopped_cell(executed: Path) -> str | None:
    """Which cell was running when the notebook stopped: the last one papermill started."""
    import nbformat

    try:
        cells = nbformat.read(executed, as_version=4).cells
    except (OSError, ValueError):
        return None
    started = [
        (position, cell)
        for position, cell in enumerate(cells, 1)
        if cell.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    if not started:
        return None
    position, cell = started[-1]
    return f"[{cell.execution_count}]" if cell.get("execution_count") else f"{position} from the top"


def _export_html(notebook: Path, html_path: Path) -> None:
    if importlib.util.find_spec("nbconvert") is None:
        raise WorkbenchError(
            "--html needs nbconvert, which is not installed",
            remedy="pip install nbconvert (the executed notebook is already written)",
        )
    from nbconvert import HTMLExporter

    # nbconvert's page loads require.js and MathJax from a CDN; a record must open
    # offline and send nothing anywhere (an empty src fetches nothing)
    exporter = HTMLExporter(require_js_url="", mathjax_url="", mermaid_js_url="", mermaid_layout_elk_js_url="")
    body, _ = exporter.from_filename(str(notebook))
    html_path.write_text(body, encoding="utf-8")


def notebooks_folder() -> Path:
    """``notebooks/`` of the current folder, else the one beside the package."""
    here = Path.cwd() / "notebooks"
    return here if here.is_dir() else Path(__file__).resolve().parent.parent / "notebooks"


def lab_command(module: str, folder: Path, args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    """The JupyterLab command line: the notebooks folder as the root (so kernels run
    in it), the workbench server extension on (the live Netron view), the options
    given, and ``--allow-root`` when running as root (containers), which Jupyter
    otherwise refuses."""
    command = [
        sys.executable,
        "-m",
        module,
        f"--ServerApp.root_dir={folder}",
        "--ServerApp.jpserver_extensions=workbench_jupyter=True",
    ]
    if args.port is not None:
        command.append(f"--port={args.port}")
    if args.ip is not None:
        command.append(f"--ip={args.ip}")
    if args.no_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        command.append("--allow-root")
    return command + list(extra)


def run_lab(args: argparse.Namespace, extra: Sequence[str] = ()) -> NoReturn:
    """Replace this process with JupyterLab (or Jupyter Notebook) on the notebooks
    folder, so that signals (Ctrl+C, a service manager's stop) reach it directly."""
    folder = notebooks_folder()
    if not folder.is_dir():
        raise InputError(
            "no notebooks folder to open",
            expected="notebooks/ in the current folder or beside the workbench package",
            found=str(folder),
            remedy="run `workbench lab` from a clone of the repository",
        )
    module = next((name for name in ("jupyterlab", "notebook") if importlib.util.find_spec(name) is not None), None)
    if module is None:
        raise WorkbenchError(
            "neither JupyterLab nor Jupyter Notebook is installed",
            remedy=f"pip install jupyterlab, then run `workbench lab` (or open {folder} in any Jupyter)",
        )
    print(f"{'lab':<14} starting {module} on {folder}", flush=True)
    command = lab_command(module, folder, args, extra)
    os.execv(command[0], command)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SRC", help="model files, or package.module:factory")
    parser.add_argument("--to", required=True, choices=TARGETS, help="target format")
    parser.add_argument("--weights", help="state dict (.pt) for a PyTorch factory")
    parser.add_argument("--input-shape", help="input shape, e.g. 1,3,224,224")
    parser.add_argument(
        "--simplify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fold constants with onnxsim (default on)",
    )
    parser.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the layer before it")
    parser.add_argument("--dialect", choices=DIALECTS, help="Caffe dialect (default bvlc)")


def _add_tolerance_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"absolute tolerance (default {DEFAULT_ATOL})")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Convert trained networks, verified layer by layer.")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser("convert", help="convert a model and verify the written files")
    _add_source_options(convert)
    convert.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the written files")
    convert.add_argument("--name", help="base name of the written files (default: the model's name)")
    convert.add_argument("--report", metavar="JSON", help="write steps, name map and comparison here")
    _add_tolerance_options(convert)
    convert.set_defaults(handler=run_convert)

    compare = commands.add_parser("compare", help="run two models on the same inputs and compare")
    compare.add_argument("sources", nargs="+", metavar="A", help="reference model files")
    compare.add_argument("--against", nargs="+", required=True, metavar="B", help="candidate model files")
    compare.add_argument("--input", metavar="X.npy", help="inputs (.npy, or .npz by input name)")
    compare.add_argument(
        "--input-shape",
        metavar="1,3,224,224",
        help="random inputs of this shape (default: the input the models record or declare)",
    )
    compare.add_argument("--per-layer", action="store_true", help="compare every mapped layer, not only outputs")
    compare.add_argument("--report", metavar="JSON", help="write the comparison here")
    compare.add_argument("--plot", metavar="PNG", help="plot the error per layer here")
    _add_tolerance_options(compare)
    compare.set_defaults(handler=run_compare)

    check_parser = commands.add_parser("check", help="list unsupported ops and pitfalls for a target")
    _add_source_options(check_parser)
    check_parser.set_defaults(handler=run_check)

    record = commands.add_parser("record", help="execute a notebook with parameters as a record")
    record.add_argument("notebook", metavar="NOTEBOOK")
    record.add_argument("-o", "--output", required=True, metavar="OUT.ipynb")
    record.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="notebook parameter",
    )
    record.add_argument("--html", action="store_true", help="also export the executed notebook as HTML")
    record.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="stop a cell that runs longer than this (default: no limit)"
    )
    record.set_defaults(handler=run_record)

    lab = commands.add_parser(
        "lab",
        help="open the notebooks in JupyterLab",
        description="Open the notebooks in JupyterLab. Options not listed here go to JupyterLab as they are "
        "(e.g. --ServerApp.token=...).",
    )
    lab.add_argument("--port", type=int, help="port to listen on (default: JupyterLab's, 8888 or the next free)")
    lab.add_argument("--ip", help="address to listen on (default: localhost; 0.0.0.0 for every interface)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser (e.g. on a remote server)")
    lab.set_defaults(handler=run_lab, passes_unknown=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "passes_unknown", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exit_request:  # argparse: usage errors (2) and --help (0)
        return int(exit_request.code or 0)
    handler: Callable[..., int] = args.handler
    try:
        return handler(args, extra) if extra else handler(args)
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
