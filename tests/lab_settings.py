"""Run a lab's cells up to its settings cell, as papermill would, to test parameter checks."""

from __future__ import annotations


def settings_namespace(lab: str, tmp_path, **parameters) -> dict:
    """Run the lab's cells up to its settings cell (imports, parameters, then ``parameters``
    as papermill injects them) in a fresh namespace; return the namespace."""
    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager

    from faceattr_lab.course import runner

    nb = nbformat.read(runner.find_lab(lab), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    injected = "\n".join(f"{name} = {value!r}" for name, value in
                         {"OUTPUT_DIR": str(tmp_path), **parameters}.items())
    cells = [*(c.source for c in code[:tagged + 1]), injected, code[tagged + 1].source]
    assert "fl.config.settings(" in cells[-1]
    namespace: dict = {}
    transform = TransformerManager().transform_cell
    for source in cells:
        exec(compile(transform(source), f"<lab {lab}>", "exec"), namespace)
    return namespace


def whole_faces(accuracy: float, n: int) -> bool:
    """An accuracy on n faces is a whole number of faces over n."""
    return 0 <= accuracy <= 1 and abs(accuracy * n - round(accuracy * n)) < 1e-6
