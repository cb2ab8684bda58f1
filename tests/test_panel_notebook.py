"""notebooks/quickstart.ipynb runs from top to bottom without a cell error."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
KERNEL = "dask-monitor-test"


def install_kernel(root: Path) -> None:
    """A kernelspec running this interpreter (the project's venv) in ``root``."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "dask-monitor tests",
                "language": "python",
            }
        )
    )


def test_quickstart_notebook(tmp_path: Path, monkeypatch: Any) -> None:
    """Every cell runs; the panel frame points at loopback; a report is written."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    install_kernel(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=180,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    frames = [
        o["data"]["text/html"]
        for o in outputs
        if "text/html" in o.get("data", {}) and "<iframe" in o["data"]["text/html"]
    ]
    assert frames
    assert 'src="http://127.0.0.1:' in frames[0]
    assert '/monitor"' in frames[0]
    report = tmp_path / "quickstart-report.html"
    assert report.stat().st_size > 500_000
    assert "Bokeh" in report.read_text(encoding="utf-8")


def _run_notebook(tmp_path: Path, monkeypatch: Any) -> Any:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    install_kernel(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb,
        timeout=180,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    return nb


def test_quickstart_shows_the_panel_before_the_work_and_no_worker_logs(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The panel's cell comes before the cell that submits work (so it updates
    live), and no cell prints the workers' "Compute Failed" logs."""
    nb = _run_notebook(tmp_path, monkeypatch)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    panel = next(
        i
        for i, cell in enumerate(code)
        if any(
            "<iframe" in o.get("data", {}).get("text/html", "") for o in cell.outputs
        )
    )
    work = next(i for i, cell in enumerate(code) if "client.map(" in cell.source)
    assert panel < work
    printed = "\n".join(
        str(o.get("text", "")) + json.dumps(o.get("data", {}))
        for cell in code
        for o in cell.outputs
    )
    assert "Compute Failed" not in printed
